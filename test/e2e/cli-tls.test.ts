import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runKvs2 } from '../support/cli-process.js';
import { tempDir } from '../support/paths.js';
import { ServerProcess } from '../support/server-process.js';
import type { StandInNode } from '../support/stand-in-node.js';
import { type MutualTlsStandIn, needsOpenssl, startMutualTlsStandIn, testCa } from '../support/tls-certificates.js';

describe('the kvs2 CLI against a real node serving mutual TLS', {
  ...needsOpenssl(),
}, () => {
  test('put and get with a client certificate signed by --tls-client-ca, from KVS2_CLIENT_TLS_* variables', async () => {
    const dir = await tempDir('cli-tls-node');
    const ca = testCa(dir.path, 'ca');
    const served = ca.leaf('kvs2.test');
    const client = ca.leaf('cli.test');
    const server = await ServerProcess.start({
      dataDir: join(dir.path, 'node'),
      args: ['--tls-cert', served.cert, '--tls-key', served.key, '--tls-client-ca', ca.cert],
    });
    try {
      const env = {
        KVS2_CLIENT_TLS_CA: ca.cert,
        KVS2_CLIENT_TLS_CERT: client.cert,
        KVS2_CLIENT_TLS_KEY: client.key,
        KVS2_CLIENT_TLS_SERVER_NAME: 'kvs2.test',
      };
      const put = await runKvs2(['put', 'cli/k', 'v', '--endpoint', server.address], { env });
      assert.equal(put.code, 0, put.stderr);
      const get = await runKvs2(['get', 'cli/k', '--endpoint', server.address], { env });
      assert.deepEqual([get.code, get.stdout.toString()], [0, 'v\n'], get.stderr);
    } finally {
      await server.stop();
      await dir.remove();
    }
  });
});

// The stand-in trusts one self-signed client certificate: what the flags carry, checked over the real wire.
describe('the kvs2 CLI over mutual TLS', needsOpenssl(), () => {
  let stand: MutualTlsStandIn;
  let node: StandInNode;
  let server: { cert: string; key: string };
  let client: { cert: string; key: string };

  before(async () => {
    stand = await startMutualTlsStandIn('cli-tls');
    ({ node, server, client } = stand);
  });
  after(() => stand.close());

  test('--tls-ca, --tls-cert, --tls-key and --tls-server-name reach the node; the same from KVS2_CLIENT_TLS_* too', async () => {
    const flags = ['--tls-ca', server.cert, '--tls-cert', client.cert, '--tls-key', client.key];
    const byFlags = await runKvs2([
      'status',
      '-o',
      'json',
      '--endpoint',
      node.address,
      ...flags,
      '--tls-server-name',
      'kvs2.test',
    ]);
    assert.deepEqual([byFlags.code, byFlags.stderr], [0, '']);
    assert.equal(JSON.parse(byFlags.stdout.toString()).version, '9.9.9');
    const byEnv = await runKvs2(['get', 'k', '--endpoint', node.address], {
      env: {
        KVS2_CLIENT_TLS_CA: server.cert,
        KVS2_CLIENT_TLS_CERT: client.cert,
        KVS2_CLIENT_TLS_KEY: client.key,
        KVS2_CLIENT_TLS_SERVER_NAME: 'kvs2.test',
      },
    });
    assert.deepEqual([byEnv.code, byEnv.stdout.toString()], [0, 'value\n'], byEnv.stderr);
  });

  test('plaintext to a TLS node exits 3; a certificate without its key, or a CA file not there, exits 2', async () => {
    const plain = await runKvs2(['status', '--endpoint', node.address]);
    assert.equal(plain.code, 3, plain.stderr);
    const noKey = await runKvs2([
      'status',
      '--endpoint',
      node.address,
      '--tls-ca',
      server.cert,
      '--tls-cert',
      client.cert,
    ]);
    assert.equal(noKey.code, 2);
    assert.match(noKey.stderr, /^kvs2 status: kvs2 client option tls.key: mutual TLS needs both cert and key\n$/);
    const noFile = await runKvs2(['status', '--endpoint', node.address, '--tls-ca', `${stand.dir}/missing.pem`]);
    assert.equal(noFile.code, 2);
    assert.match(noFile.stderr, /tls.ca: cannot read/);
  });
});
