import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect, type PeerCertificate } from 'node:tls';
import { status } from '@grpc/grpc-js';
import { Kvs2Client, Kvs2ClientError, type Kvs2ClientOptions } from '../../src/client/index.js';
import { runKvs2 } from '../support/cli-process.js';
import { tempDir } from '../support/paths.js';
import { ServerProcess } from '../support/server-process.js';
import { needsOpenssl, type TestCa, testCa } from '../support/tls-certificates.js';

const b = (text: string): Buffer => Buffer.from(text);

/** The kvs2 code of a call that must fail, or a failed assertion if it succeeds. */
async function failure(promise: Promise<unknown>): Promise<Kvs2ClientError> {
  const outcome = await promise.then(
    () => assert.fail('the call succeeded'),
    (error: unknown) => error,
  );
  assert.ok(outcome instanceof Kvs2ClientError, String(outcome));
  return outcome;
}

/** Runs `use` with a client of its own connection, closed afterwards. */
async function withClient<T>(address: string, options: Kvs2ClientOptions, use: (c: Kvs2Client) => Promise<T>) {
  const client = new Kvs2Client(address, { ownConnection: true, readRetries: false, timeoutMs: 10_000, ...options });
  try {
    return await use(client);
  } finally {
    client.close();
  }
}

/** The certificate a fresh TLS connection to the node is shown (offering h2, as a gRPC client does). */
async function servedCertificate(port: number): Promise<PeerCertificate> {
  const socket = connect({ host: '127.0.0.1', port, ALPNProtocols: ['h2'], rejectUnauthorized: false });
  try {
    await once(socket, 'secureConnect');
    return socket.getPeerCertificate();
  } finally {
    socket.destroy();
  }
}

describe('a kvs2 node serving TLS (--tls-cert, --tls-key)', needsOpenssl(), () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let ca: TestCa;
  let server: ServerProcess;

  before(async () => {
    dir = await tempDir('server-tls');
    ca = testCa(dir.path, 'ca-one');
    const leaf = ca.leaf('kvs2.test');
    server = await ServerProcess.start({
      dataDir: join(dir.path, 'node'),
      args: ['--tls-cert', leaf.cert, '--tls-key', leaf.key],
    });
  });
  after(async () => {
    await server?.stop();
    await dir?.remove();
  });

  test('a TLS client writes and reads; a plaintext client is UNAVAILABLE', async () => {
    const tls = { ca: ca.cert, serverName: 'kvs2.test' };
    await withClient(server.address, { tls }, async (client) => {
      await client.set({ key: b('tls/k'), value: b('v'), waitForApply: true });
      assert.equal((await client.get({ key: b('tls/k') })).data.toString(), 'v');
    });
    await withClient(server.address, {}, async (client) => {
      assert.equal((await failure(client.get({ key: b('tls/k') }))).code, status.UNAVAILABLE);
    });
  });

  test('the CLI with --tls-ca reads; without it, it exits 3', async () => {
    const ok = await runKvs2([
      'get',
      'tls/k',
      '--endpoint',
      server.address,
      '--tls-ca',
      ca.cert,
      '--tls-server-name',
      'kvs2.test',
    ]);
    assert.deepEqual([ok.code, ok.stdout.toString()], [0, 'v\n'], ok.stderr);
    const plain = await runKvs2(['get', 'tls/k', '--endpoint', server.address]);
    assert.equal(plain.code, 3, plain.stderr);
  });

  test('start-up says TLS is on, before the listening line, and gives no exposure warning', () => {
    const listening = server.lines.findIndex((line) => line.msg.startsWith('kvs2 listening'));
    const tlsLine = server.lines.findIndex((line) => line.msg === 'gRPC speaks TLS only');
    assert.ok(tlsLine >= 0 && tlsLine < listening, JSON.stringify(server.lines));
    assert.deepEqual(
      server.lines.filter((line) => line.level === 'warn'),
      [],
    );
  });
});

describe('a kvs2 node serving mutual TLS (--tls-client-ca)', needsOpenssl(), () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let ca: TestCa;
  let otherCa: TestCa;
  let server: ServerProcess;

  before(async () => {
    dir = await tempDir('server-mtls');
    ca = testCa(dir.path, 'ca-one');
    otherCa = testCa(dir.path, 'ca-other');
    const leaf = ca.leaf('kvs2.test');
    server = await ServerProcess.start({
      dataDir: join(dir.path, 'node'),
      args: ['--tls-cert', leaf.cert, '--tls-key', leaf.key],
      env: { KVS2_TLS_CLIENT_CA: ca.cert },
    });
  });
  after(async () => {
    await server?.stop();
    await dir?.remove();
  });

  test('a client certificate signed by the CA gets through; none, or one from another CA, does not', async () => {
    const trust = { ca: ca.cert, serverName: 'kvs2.test' };
    const good = ca.leaf('client.test');
    await withClient(server.address, { tls: { ...trust, ...good } }, async (client) => {
      await client.set({ key: b('m/k'), value: b('v'), waitForApply: true });
      assert.equal((await client.get({ key: b('m/k') })).data.toString(), 'v');
    });
    const stranger = otherCa.leaf('client.test');
    for (const tls of [trust, { ...trust, ...stranger }]) {
      await withClient(server.address, { tls }, async (client) => {
        const error = await failure(client.get({ key: b('m/k') }));
        assert.equal(error.code, status.UNAVAILABLE, JSON.stringify(tls));
      });
    }
  });

  test('the CLI with --tls-cert and --tls-key signed by the CA reads', async () => {
    const good = ca.leaf('cli.test');
    const trust = ['--tls-ca', ca.cert, '--tls-server-name', 'kvs2.test'];
    const ok = await runKvs2([
      'get',
      'm/k',
      '--endpoint',
      server.address,
      ...trust,
      '--tls-cert',
      good.cert,
      '--tls-key',
      good.key,
    ]);
    assert.deepEqual([ok.code, ok.stdout.toString()], [0, 'v\n'], ok.stderr);
    const without = await runKvs2(['get', 'm/k', '--endpoint', server.address, ...trust]);
    assert.equal(without.code, 3, without.stderr);
  });
});

describe('certificate rotation on SIGHUP', needsOpenssl(), () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let server: ServerProcess;

  before(async () => {
    dir = await tempDir('server-tls-rotation');
  });
  after(async () => {
    await server?.stop();
    await dir?.remove();
  });

  test('a new pair is served to new connections; open connections keep working; a bad file keeps the pair', async () => {
    const oldCa = testCa(dir.path, 'ca-old');
    const newCa = testCa(dir.path, 'ca-new');
    const certFile = join(dir.path, 'served.crt');
    const keyFile = join(dir.path, 'served.key');
    const install = (pair: { cert: string; key: string }) => {
      copyFileSync(pair.cert, certFile);
      copyFileSync(pair.key, keyFile);
    };
    const fingerprintOf = (cert: string) => new X509Certificate(readFileSync(cert)).fingerprint256;
    const oldLeaf = oldCa.leaf('kvs2.test');
    const newLeaf = newCa.leaf('kvs2.test');
    install(oldLeaf);
    server = await ServerProcess.start({
      dataDir: join(dir.path, 'node'),
      args: ['--tls-cert', certFile, '--tls-key', keyFile],
    });
    assert.equal((await servedCertificate(server.port)).fingerprint256, fingerprintOf(oldLeaf.cert));

    const trustOld = { ca: oldCa.cert, serverName: 'kvs2.test' };
    const trustNew = { ca: newCa.cert, serverName: 'kvs2.test' };
    const open = new Kvs2Client(server.address, { ownConnection: true, readRetries: false, tls: trustOld });
    try {
      await open.set({ key: b('r/k'), value: b('before'), waitForApply: true });

      install(newLeaf);
      const reloads = () => server.lines.filter((line) => line.msg.startsWith('TLS certificates reloaded')).length;
      server.child.kill('SIGHUP');
      await server.waitForLine((line) => line.msg.startsWith('TLS certificates reloaded'));
      assert.equal(reloads(), 1);

      assert.equal((await servedCertificate(server.port)).fingerprint256, fingerprintOf(newLeaf.cert));
      await withClient(server.address, { tls: trustNew }, async (client) => {
        assert.equal((await client.get({ key: b('r/k') })).data.toString(), 'before');
      });
      await withClient(server.address, { tls: trustOld }, async (client) => {
        assert.equal((await failure(client.get({ key: b('r/k') }))).code, status.UNAVAILABLE);
      });
      // The connection opened before the rotation still carries calls (the write applied before it
      // returns: a plain Set is acknowledged once the log has it, the read after it may come first).
      await open.set({ key: b('r/k'), value: b('after'), waitForApply: true });
      assert.equal((await open.get({ key: b('r/k') })).data.toString(), 'after');

      // A reload that cannot read a usable pair keeps the one in use, and says so.
      writeFileSync(keyFile, 'not a key\n');
      server.child.kill('SIGHUP');
      const warning = await server.waitForLine((line) => line.msg.startsWith('TLS certificates NOT reloaded'));
      assert.equal(warning.level, 'warn');
      assert.equal((await servedCertificate(server.port)).fingerprint256, fingerprintOf(newLeaf.cert));
      await withClient(server.address, { tls: trustNew }, async (client) => {
        assert.equal((await client.get({ key: b('r/k') })).data.toString(), 'after');
      });
    } finally {
      open.close();
    }
  });
});

describe('start-up checks of the TLS settings', needsOpenssl(), () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let ca: TestCa;

  before(async () => {
    dir = await tempDir('server-tls-usage');
    ca = testCa(dir.path, 'ca');
  });
  after(() => dir.remove());

  test('half a pair, a client CA without a pair, or an unreadable or unusable file exits 2 naming the flag', async () => {
    const leaf = ca.leaf('kvs2.test');
    const missing = join(dir.path, 'missing.pem');
    const cases: Array<[readonly string[], RegExp]> = [
      [['--tls-cert', leaf.cert], /^kvs2: invalid --tls-key: missing/],
      [['--tls-key', leaf.key], /^kvs2: invalid --tls-cert: missing/],
      [['--tls-client-ca', ca.cert], /^kvs2: invalid --tls-client-ca: mutual TLS needs the server certificate/],
      [['--tls-cert', leaf.cert, '--tls-key', missing], /^kvs2: invalid --tls-key: cannot read .*missing\.pem/],
      [
        ['--tls-cert', leaf.cert, '--tls-key', leaf.key, '--tls-client-ca', missing],
        /^kvs2: invalid --tls-client-ca: cannot read/,
      ],
      // A key that is not the certificate's.
      [['--tls-cert', leaf.cert, '--tls-key', ca.key], /^kvs2: invalid --tls-cert\/--tls-key: .* do not make a usable/],
    ];
    for (const [flags, message] of cases) {
      const result = await runKvs2(['serve', '--listen', '127.0.0.1:0', '--data-dir', join(dir.path, 'n'), ...flags]);
      assert.equal(result.code, 2, `${flags.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, message);
    }
  });
});

describe('plaintext on a non-loopback address', () => {
  test('start-up warns once, naming the address and the TLS flags', async () => {
    const dir = await tempDir('server-exposed');
    // 0.0.0.0 with a free port: the warning is about reachability, the test only calls through loopback.
    const server = await ServerProcess.start({ dataDir: join(dir.path, 'node'), args: ['--listen', '0.0.0.0:0'] });
    try {
      const warnings = server.lines.filter((line) => line.level === 'warn');
      assert.equal(warnings.length, 1, JSON.stringify(warnings));
      assert.equal(warnings[0]?.address, `0.0.0.0:${server.port}`);
      assert.match(warnings[0]?.msg ?? '', /0\.0\.0\.0:\d+ is PLAINTEXT.*--tls-cert and --tls-key/);
    } finally {
      await server.stop();
      await dir.remove();
    }
  });
});
