import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { type ConnectionOptions, connect } from 'node:tls';
import { Admin, Consumer, Producer, type SASLMechanismValue } from '@platformatic/kafka';
import { type ClusterSecurity, KafkaCluster } from '../../../scripts/kafka/cluster.js';
import { kafkaBrokers, needsKafka } from '../../support/kafka-env.js';
import { tempDir } from '../../support/paths.js';
import { needsOpenssl, selfSigned } from '../../support/tls-certificates.js';

/**
 * The Kafka runner's `secure` option (`npm run kafka -- up --secure`): every broker gets a SASL_SSL listener
 * (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 for one user) and an SSL listener that requires a client certificate.
 * Proven with a real client over the real listeners; the client verifies the broker's certificate against
 * the cluster's CA for the host name 127.0.0.1, as Node does by default. One cluster for the whole file.
 */
describe('the Kafka runner with secure listeners', { skip: needsKafka().skip ?? needsOpenssl().skip }, () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let cluster: KafkaCluster;
  let security: ClusterSecurity;
  let password: string;

  before(async () => {
    // Only to fail in CI without Kafka, like the other Kafka tests: this file runs its own brokers.
    kafkaBrokers();
    dir = await tempDir('kafka-secure');
    cluster = await KafkaCluster.start({
      stateDir: dir.path,
      secure: true,
      // A killed broker registers again once its old session has expired (9 s by default): the restart
      // test below waits that long, so a shorter session.
      extraProperties: ['broker.session.timeout.ms=2000', 'broker.heartbeat.interval.ms=500'],
    });
    const described = cluster.security;
    assert.ok(described !== undefined, 'a cluster started with secure: true describes its secure listeners');
    security = described;
    password = readFileSync(security.passwordFile, 'utf8').trim();
  });

  after(async () => {
    await cluster?.stop();
    await dir?.remove();
  });

  const sasl = (mechanism: SASLMechanismValue, secret = password): KafkaConnection => ({
    bootstrapBrokers: security.saslSslBootstrap.split(','),
    tls: { ca: readFileSync(security.caFile) },
    sasl: { mechanism, username: security.username, password: secret },
  });

  test('the cluster says where its secure listeners and files are; the secrets are readable by their owner only', () => {
    assert.match(security.saslSslBootstrap, /^127\.0\.0\.1:\d+$/);
    assert.match(security.sslBootstrap, /^127\.0\.0\.1:\d+$/);
    assert.notEqual(security.saslSslBootstrap, security.sslBootstrap);
    assert.ok(!security.saslSslBootstrap.includes(cluster.bootstrap), 'the plaintext listener stays apart');
    assert.equal(security.username, 'kvs2');
    assert.deepEqual([...security.saslMechanisms], ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512']);
    assert.ok(password.length >= 24, 'a generated password');
    for (const file of [security.passwordFile, security.clientKeyFile]) {
      assert.equal(statSync(file).mode & 0o077, 0, `${file} is private`);
    }
  });

  for (const mechanism of ['SCRAM-SHA-512', 'SCRAM-SHA-256', 'PLAIN'] as const) {
    test(`SASL_SSL with ${mechanism}: a record is produced and read back`, async () => {
      await assertRoundTrip(sasl(mechanism));
    });
  }

  test('SASL_SSL refuses a wrong password with every mechanism', async () => {
    for (const mechanism of ['SCRAM-SHA-512', 'SCRAM-SHA-256', 'PLAIN'] as const) {
      const error = await metadataError(sasl(mechanism, `${password}x`));
      const refusal = nestedErrors(error).find((e) => fieldOf(e, 'apiId') === 'SASL_AUTHENTICATION_FAILED');
      assert.ok(refusal !== undefined, `${mechanism}: refused for its credentials, not otherwise: ${String(error)}`);
    }
  });

  test('SSL with the client certificate the CA signed: a record is produced and read back', async () => {
    await assertRoundTrip({
      bootstrapBrokers: security.sslBootstrap.split(','),
      tls: {
        ca: readFileSync(security.caFile),
        cert: readFileSync(security.clientCertFile),
        key: readFileSync(security.clientKeyFile),
      },
    });
  });

  test('SSL refuses a client without a certificate, and one whose certificate another CA signed', async (t) => {
    const [host, port] = hostAndPort(security.sslBootstrap);
    const ca = readFileSync(security.caFile);
    const stranger = selfSigned(dir.path, 'stranger');
    const withCert = await apiVersionsOverTls({
      host,
      port,
      ca,
      cert: readFileSync(security.clientCertFile),
      key: readFileSync(security.clientKeyFile),
    });
    assert.equal(withCert, 'answered', 'the same request with the CA-signed certificate is answered');
    const withoutCert = await apiVersionsOverTls({ host, port, ca });
    t.diagnostic(`without a certificate: ${withoutCert}`);
    assert.match(withoutCert, /^refused: .*(CERTIFICATE_REQUIRED|HANDSHAKE_FAILURE|BAD_CERTIFICATE)/);
    const foreign = await apiVersionsOverTls({
      host,
      port,
      ca,
      cert: readFileSync(stranger.cert),
      key: readFileSync(stranger.key),
    });
    t.diagnostic(`with another CA's certificate: ${foreign}`);
    assert.match(foreign, /^refused: .*(UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_UNKNOWN|HANDSHAKE_FAILURE)/);
    // And the Kafka client without a certificate cannot use the cluster either.
    const error = await metadataError({ bootstrapBrokers: [`${host}:${port}`], tls: { ca } });
    assert.ok(
      nestedErrors(error).some((e) => fieldOf(e, 'code') === 'PLT_KFK_NETWORK'),
      String(error),
    );
  });

  test('a broker restarted, and the cluster attached from its state dir, keep the secure listeners', async () => {
    await cluster.stopBroker(1);
    await cluster.startBroker(1);
    const attached = await KafkaCluster.attach(dir.path);
    assert.deepEqual(attached?.security, security);
    const [status] = (await attached?.status()) ?? [];
    assert.equal(`127.0.0.1:${status?.saslSslPort}`, security.saslSslBootstrap);
    assert.equal(`127.0.0.1:${status?.sslPort}`, security.sslBootstrap);
    await assertRoundTrip(sasl('SCRAM-SHA-512'));
  });
});

interface KafkaConnection {
  readonly bootstrapBrokers: string[];
  readonly tls: ConnectionOptions;
  readonly sasl?: { mechanism: SASLMechanismValue; username: string; password: string };
}

/** Creates a topic, produces one record and consumes it back, all through `connection`. */
async function assertRoundTrip(connection: KafkaConnection): Promise<void> {
  const topic = `kvs2-secure-${randomUUID().slice(0, 8)}`;
  const key = Buffer.from(`key-${topic}`);
  const value = Buffer.from(randomUUID());
  const admin = new Admin({ clientId: 'kvs2-test-secure-admin', ...connection });
  const producer = new Producer({ clientId: 'kvs2-test-secure-producer', ...connection });
  const consumer = new Consumer({ clientId: 'kvs2-test-secure-consumer', groupId: `g-${topic}`, ...connection });
  try {
    await admin.createTopics({ topics: [topic], partitions: 1, replicas: 1 });
    await producer.send({ messages: [{ topic, key, value }] });
    const stream = await consumer.consume({ topics: [topic], mode: 'earliest', autocommit: false, maxWaitTime: 200 });
    try {
      for await (const message of stream) {
        assert.deepEqual([message.key, message.value], [key, value]);
        break;
      }
    } finally {
      await stream.close();
    }
  } finally {
    await consumer.close(true);
    await producer.close();
    await admin.close();
  }
}

/** The error a metadata request through `connection` fails with; fails the test if it succeeds. */
async function metadataError(connection: KafkaConnection): Promise<unknown> {
  const admin = new Admin({ clientId: 'kvs2-test-secure-refused', retries: 0, ...connection });
  try {
    await admin.metadata({ topics: [] });
  } catch (error) {
    return error;
  } finally {
    await admin.close();
  }
  assert.fail('the request was answered');
}

/**
 * Sends a Kafka ApiVersions request (v0) over TLS and says whether it was answered or how the connection
 * was refused. Under TLS 1.3 the server checks the client's certificate after the client considers the
 * handshake done, so the refusal arrives as an alert on the first read: waiting for an answer tells both.
 */
function apiVersionsOverTls(options: ConnectionOptions & { host: string; port: number }): Promise<string> {
  return new Promise((resolve) => {
    const clientId = Buffer.from('kvs2-test');
    const request = Buffer.alloc(4 + 2 + 2 + 4 + 2 + clientId.length);
    request.writeInt32BE(request.length - 4, 0);
    request.writeInt16BE(18, 4); // ApiVersions
    request.writeInt16BE(0, 6);
    request.writeInt32BE(1, 8); // correlation id
    request.writeInt16BE(clientId.length, 12);
    clientId.copy(request, 14);
    const socket = connect(options, () => socket.write(request));
    socket.once('data', () => {
      socket.destroy();
      resolve('answered');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(`refused: ${error.code ?? ''} ${error.message}`));
    socket.once('close', () => resolve('refused: closed without an answer'));
  });
}

function hostAndPort(bootstrap: string): [string, number] {
  const [host = '', port = ''] = (bootstrap.split(',')[0] ?? '').split(':');
  return [host, Number(port)];
}

/** The error and every error it wraps (`cause`, and AggregateError's `errors`). */
function nestedErrors(error: unknown): unknown[] {
  const found: unknown[] = [];
  const visit = (e: unknown) => {
    if (e === undefined || e === null || found.includes(e)) return;
    found.push(e);
    if (typeof e !== 'object') return;
    visit((e as { cause?: unknown }).cause);
    const inner: unknown = (e as { errors?: unknown }).errors;
    if (Array.isArray(inner)) for (const each of inner) visit(each);
  };
  visit(error);
  return found;
}

function fieldOf(error: unknown, field: string): unknown {
  return typeof error === 'object' && error !== null ? (error as Record<string, unknown>)[field] : undefined;
}
