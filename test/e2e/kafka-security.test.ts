import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { Kvs2Client } from '../../src/client/index.js';
import { isKvs2Error, type Kvs2Error } from '../../src/errors.js';
import { openReplica } from '../../src/replica-lib/index.js';
import { OwnKafkaCluster } from '../support/kafka-cluster.js';
import { needsKafka } from '../support/kafka-env.js';
import { tempDir } from '../support/paths.js';
import { ServerProcess } from '../support/server-process.js';
import { needsOpenssl } from '../support/tls-certificates.js';

const b = (text: string): Buffer => Buffer.from(text);

/**
 * kvs2 nodes reaching Kafka only through its secure listeners (a cluster of the test's own whose
 * certificates and SASL user the runner made): replication through SASL_SSL and through SSL with a client
 * certificate, the password kept out of logs and command lines, a wrong one stopping the node.
 */
describe('kvs2 on Kafka over TLS and SASL', { ...needsKafka(), ...needsOpenssl() }, () => {
  let cluster: OwnKafkaCluster;
  let security: NonNullable<OwnKafkaCluster['security']>;
  let password: string;
  let dir: Awaited<ReturnType<typeof tempDir>>;
  const running: ServerProcess[] = [];
  const clients: Kvs2Client[] = [];
  const TOPIC = 'secure-kvs2';

  const start = async (name: string, args: readonly string[], env: Record<string, string> = {}) => {
    const node = await ServerProcess.start({
      dataDir: `${dir.path}/${name}`,
      args: ['--topic', TOPIC, '--partitions', '3', ...args],
      env,
    });
    running.push(node);
    return node;
  };
  const client = (node: ServerProcess): Kvs2Client => {
    const c = new Kvs2Client(node.address);
    clients.push(c);
    return c;
  };

  before(async () => {
    cluster = await OwnKafkaCluster.start(1, [], { secure: true });
    assert.ok(cluster.security !== undefined, 'the runner made a secure cluster');
    security = cluster.security;
    password = (await readFile(security.passwordFile, 'utf8')).trim();
    dir = await tempDir('kafka-security');
  });
  after(async () => {
    for (const c of clients) c.close();
    await Promise.all(running.map((node) => node.stop()));
    await cluster?.stop();
    await dir?.remove();
  });

  test('nodes on SASL_SSL (SCRAM-SHA-512, password file), SSL with a client certificate and SASL_SSL (PLAIN, password in the environment) replicate each other', async () => {
    const scram = await start('scram', [
      ...['--kafka-brokers', security.saslSslBootstrap, '--kafka-tls-ca', security.caFile],
      ...['--kafka-sasl-mechanism', 'SCRAM-SHA-512', '--kafka-sasl-username', security.username],
      ...['--kafka-sasl-password-file', security.passwordFile],
    ]);
    await scram.waitUntilCaughtUp(60_000);
    const mtls = await start('mtls', [
      ...['--kafka-brokers', security.sslBootstrap, '--kafka-tls-ca', security.caFile],
      ...['--kafka-tls-cert', security.clientCertFile, '--kafka-tls-key', security.clientKeyFile],
    ]);
    const plain = await start(
      'plain',
      [
        ...['--kafka-brokers', security.saslSslBootstrap, '--kafka-tls-ca', security.caFile],
        ...['--kafka-sasl-mechanism', 'PLAIN', '--kafka-sasl-username', security.username],
      ],
      { KVS2_KAFKA_SASL_PASSWORD: password },
    );
    await Promise.all([mtls.waitUntilCaughtUp(60_000), plain.waitUntilCaughtUp(60_000)]);
    for (const [node, protocol, mechanism] of [
      [scram, 'SASL_SSL', 'SCRAM-SHA-512'],
      [mtls, 'SSL', undefined],
      [plain, 'SASL_SSL', 'PLAIN'],
    ] as const) {
      const line = await node.waitForLine((l) => l.msg.startsWith('reaching Kafka over'));
      assert.deepEqual([line.protocol, line.saslMechanism], [protocol, mechanism]);
    }

    // A write through each node, read on the others after its token: every path carries data both ways.
    const nodes = [scram, mtls, plain];
    for (const [i, writer] of nodes.entries()) {
      const { token } = await client(writer).set({ key: b(`k${i}`), value: b(`through node ${i}`) });
      for (const reader of nodes) {
        const got = await client(reader).get({ key: b(`k${i}`), after: [token] });
        assert.equal(got.data.toString(), `through node ${i}`);
      }
    }

    // The password is in no log line of any node, and on no command line.
    for (const node of nodes) {
      const output = [...node.lines.map((l) => JSON.stringify(l)), ...node.stderr].join('\n');
      assert.ok(!output.includes(password), 'the password is not in the logs');
      const commandLine = await readFile(`/proc/${node.child.pid}/cmdline`, 'utf8');
      assert.ok(!commandLine.includes(password), 'the password is not on the command line');
    }
  });

  test('a wrong SASL password stops the node at start-up with LOG_MISCONFIGURED naming the refusal', async () => {
    const wrong = await start(
      'wrong-password',
      [
        ...['--kafka-brokers', security.saslSslBootstrap, '--kafka-tls-ca', security.caFile],
        ...['--kafka-sasl-mechanism', 'SCRAM-SHA-256', '--kafka-sasl-username', security.username],
      ],
      { KVS2_KAFKA_SASL_PASSWORD: `${password}-wrong` },
    );
    const { code } = await wrong.exited;
    assert.equal(code, 1);
    const fatal = wrong.lines.find((l) => l.level === 'fatal');
    assert.ok(fatal !== undefined, 'a fatal line says why');
    assert.match(JSON.stringify(fatal), /SASL_AUTHENTICATION_FAILED/);
    assert.ok(!JSON.stringify(wrong.lines).includes(password), 'not even the wrong password is logged');
  });

  for (const applyOn of ['worker', 'caller'] as const) {
    test(`the in-process replica (applyOn: '${applyOn}') with a wrong SASL password: onFatal, status().failure and waits all say LOG_MISCONFIGURED; close() ends it`, async () => {
      const fatal: Kvs2Error[] = [];
      const replica = await openReplica({
        kafka: {
          brokers: [security.saslSslBootstrap],
          topic: TOPIC,
          security: {
            tlsCaFile: security.caFile,
            sasl: { mechanism: 'SCRAM-SHA-256', username: security.username, password: `${password}-wrong` },
          },
        },
        dataDir: `${dir.path}/replica-wrong-password-${applyOn}`,
        applyOn,
        onFatal: (error) => fatal.push(error),
      });
      try {
        const waited = await replica.whenCaughtUp(AbortSignal.timeout(60_000)).then(
          () => assert.fail('caught up with a wrong password'),
          (error: unknown) => error,
        );
        assert.ok(isKvs2Error(waited));
        assert.equal(waited.code, 'LOG_MISCONFIGURED');
        assert.match(waited.message, /SASL_AUTHENTICATION_FAILED/);
        assert.deepEqual(
          fatal.map((error) => error.code),
          ['LOG_MISCONFIGURED'],
          'onFatal is called once',
        );
        assert.equal(replica.status().failure?.code, 'LOG_MISCONFIGURED');
        // Reads keep answering from what was applied (nothing here).
        assert.equal(replica.get(b('k')), undefined);
        assert.ok(!waited.message.includes(password), 'the password is not in the error');
      } finally {
        await replica.close();
      }
    });
  }

  test('a node that does not trust the brokers’ certificate stops at start-up, naming the certificate problem', async () => {
    // Node's bundled CAs do not include the runner's own CA.
    const untrusting = await start('untrusting', [
      ...['--kafka-brokers', security.sslBootstrap, '--kafka-security-protocol', 'SSL'],
    ]);
    const { code } = await untrusting.exited;
    assert.equal(code, 1);
    const fatal = untrusting.lines.find((l) => l.level === 'fatal');
    assert.match(JSON.stringify(fatal), /LOG_MISCONFIGURED|certificate/);
    assert.match(JSON.stringify(fatal), /self-signed certificate in certificate chain/);
  });
});
