import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { describe, test } from 'node:test';
import { inspect } from 'node:util';
import { envVarOf, parseConfig, serveWorkersFor } from '../../src/config/config.js';
import { ConfigError } from '../../src/config/config-error.js';

describe('parseConfig', () => {
  test('defaults: embedded log, ./data, 127.0.0.1:50051 and the documented limits', () => {
    const config = parseConfig({}, '/srv');
    assert.deepEqual(config.listen, { host: '127.0.0.1', port: 50051 });
    assert.equal(config.dataDir, '/srv/data');
    assert.equal(config.kafka, null);
    assert.equal(parseConfig({ 'kafka-brokers': 'k:9092' }, '/srv').kafka?.topic, 'kvs2');
    assert.deepEqual(config.limits, {
      maxKeyBytes: 1024,
      maxValueBytes: 1048576,
      maxBatchKeys: 10000,
      maxReplyBytes: 64 * 1024 * 1024,
    });
    assert.equal(config.requestTimeoutMs, 5000);
    assert.equal(config.maxReadyLag, 0);
    assert.equal(parseConfig({ 'max-ready-lag': '5000' }).maxReadyLag, 5000);
    assert.equal(config.logLevel, 'info');
    assert.ok(Object.isFrozen(config) && Object.isFrozen(config.limits) && Object.isFrozen(config.listen));
  });

  test('Kafka brokers, IPv6 listen addresses and absolute data dirs', () => {
    const config = parseConfig({
      'kafka-brokers': '127.0.0.1:9092, localhost:9093',
      topic: 'orders.v1',
      listen: '[::1]:7000',
      'data-dir': '/var/lib/kvs2',
    });
    assert.deepEqual(config.kafka, {
      brokers: ['127.0.0.1:9092', 'localhost:9093'],
      topic: 'orders.v1',
      partitions: 12,
      replicationFactor: null,
      partitioner: 'murmur2',
      security: { protocol: 'PLAINTEXT', tls: null, sasl: null },
    });
    assert.equal(parseConfig({ 'kafka-brokers': 'k:9092', 'replication-factor': '2' }).kafka?.replicationFactor, 2);
    assert.equal(
      parseConfig({ 'kafka-brokers': 'k:9092', 'kafka-partitioner': 'Hash-Tags' }).kafka?.partitioner,
      'hash-tags',
    );
    assert.deepEqual(config.listen, { host: '::1', port: 7000 });
    assert.equal(config.dataDir, '/var/lib/kvs2');
  });

  test('--serve-workers: a number from 0 to 64, or auto (one per core but one from 4 cores on, at most 8)', () => {
    assert.equal(parseConfig({ 'serve-workers': '0' }).serveWorkers, 0);
    assert.equal(parseConfig({ 'serve-workers': '3' }).serveWorkers, 3);
    assert.equal(parseConfig({}).serveWorkers, serveWorkersFor(availableParallelism()));
    assert.deepEqual([1, 2, 3, 4, 6, 9, 64].map(serveWorkersFor), [0, 0, 0, 3, 5, 8, 8]);
    for (const bad of ['-1', '65', 'two', '1.5']) {
      assert.throws(() => parseConfig({ 'serve-workers': bad }), /--serve-workers/, bad);
    }
  });

  test('metrics are off unless --metrics-listen names an address', () => {
    assert.equal(parseConfig({}).metricsListen, null);
    assert.equal(parseConfig({ 'metrics-listen': ' ' }).metricsListen, null);
    assert.deepEqual(parseConfig({ 'metrics-listen': ':9464' }).metricsListen, { host: '0.0.0.0', port: 9464 });
    assert.deepEqual(parseConfig({ 'metrics-listen': '127.0.0.1:0' }).metricsListen, { host: '127.0.0.1', port: 0 });
  });

  test('TLS is off unless both --tls-cert and --tls-key are given; paths are resolved against the cwd', () => {
    assert.equal(parseConfig({}).tls, null);
    assert.equal(parseConfig({ 'tls-cert': '', 'tls-key': ' ' }).tls, null);
    assert.deepEqual(parseConfig({ 'tls-cert': 'tls/node.crt', 'tls-key': '/keys/node.key' }, '/srv').tls, {
      certFile: '/srv/tls/node.crt',
      keyFile: '/keys/node.key',
      clientCaFile: null,
    });
    assert.equal(
      parseConfig({ 'tls-cert': 'a.crt', 'tls-key': 'a.key', 'tls-client-ca': 'ca.crt' }, '/srv').tls?.clientCaFile,
      '/srv/ca.crt',
    );
  });

  describe('Kafka TLS and SASL', () => {
    const kafka = (raw: Record<string, string>, env: Record<string, string> = {}) =>
      parseConfig({ 'kafka-brokers': 'k:9093', ...raw }, '/srv', env).kafka?.security;

    test('the protocol follows what is given: a SASL mechanism means SASL_SSL, a TLS file SSL, nothing PLAINTEXT', () => {
      assert.deepEqual(kafka({}), { protocol: 'PLAINTEXT', tls: null, sasl: null });
      assert.deepEqual(kafka({ 'kafka-tls-ca': 'ca.pem' }), {
        protocol: 'SSL',
        tls: { caFile: '/srv/ca.pem', certFile: null, keyFile: null },
        sasl: null,
      });
      assert.deepEqual(
        kafka({
          'kafka-sasl-mechanism': 'scram-sha-512',
          'kafka-sasl-username': 'kvs2',
          'kafka-sasl-password-file': 'secrets/kafka',
        }),
        {
          protocol: 'SASL_SSL',
          tls: { caFile: null, certFile: null, keyFile: null },
          sasl: { mechanism: 'SCRAM-SHA-512', username: 'kvs2', password: { file: '/srv/secrets/kafka' } },
        },
      );
      // SSL with Node's bundled CAs, and SASL_PLAINTEXT, only when named.
      assert.deepEqual(kafka({ 'kafka-security-protocol': 'ssl' }), {
        protocol: 'SSL',
        tls: { caFile: null, certFile: null, keyFile: null },
        sasl: null,
      });
      assert.equal(
        kafka(
          { 'kafka-security-protocol': 'SASL_PLAINTEXT', 'kafka-sasl-mechanism': 'PLAIN', 'kafka-sasl-username': 'u' },
          { KVS2_KAFKA_SASL_PASSWORD: 'p' },
        )?.protocol,
        'SASL_PLAINTEXT',
      );
    });

    test('a password from KVS2_KAFKA_SASL_PASSWORD is usable but never shown: not in JSON, inspect or a string', () => {
      const security = kafka(
        { 'kafka-sasl-mechanism': 'PLAIN', 'kafka-sasl-username': 'kvs2' },
        { KVS2_KAFKA_SASL_PASSWORD: 'hunter2-secret' },
      );
      const password = security?.sasl?.password;
      assert.ok(password !== undefined && 'value' in password);
      assert.equal(password.value.reveal(), 'hunter2-secret');
      assert.equal(password.env, 'KVS2_KAFKA_SASL_PASSWORD');
      for (const shown of [JSON.stringify(security), inspect(security, { depth: 10 }), `${password.value}`]) {
        assert.ok(!shown.includes('hunter2'), shown);
        assert.ok(shown.includes('[redacted]'), shown);
      }
    });

    const refused: Array<[string, Record<string, string>, Record<string, string>?]> = [
      ['--kafka-tls-ca', { 'kafka-security-protocol': 'PLAINTEXT', 'kafka-tls-ca': 'ca.pem' }],
      ['--kafka-tls-key', { 'kafka-tls-cert': 'node.pem' }],
      ['--kafka-tls-cert', { 'kafka-tls-key': 'node.key' }],
      ['--kafka-sasl-mechanism', { 'kafka-security-protocol': 'SSL', 'kafka-sasl-mechanism': 'PLAIN' }],
      ['--kafka-sasl-mechanism', { 'kafka-security-protocol': 'SASL_SSL' }],
      ['--kafka-sasl-mechanism', { 'kafka-sasl-mechanism': 'GSSAPI', 'kafka-sasl-username': 'u' }],
      ['--kafka-sasl-username', { 'kafka-sasl-mechanism': 'PLAIN' }, { KVS2_KAFKA_SASL_PASSWORD: 'p' }],
      ['--kafka-sasl-password-file', { 'kafka-sasl-mechanism': 'PLAIN', 'kafka-sasl-username': 'u' }],
      [
        '--kafka-sasl-password-file',
        { 'kafka-sasl-mechanism': 'PLAIN', 'kafka-sasl-username': 'u', 'kafka-sasl-password-file': 'p' },
        { KVS2_KAFKA_SASL_PASSWORD: 'p' },
      ],
      ['--kafka-security-protocol', { 'kafka-security-protocol': 'TLS' }],
    ];
    for (const [setting, raw, env] of refused) {
      test(`refuses ${JSON.stringify(raw)}${env ? ' with a password in the environment' : ''}, naming ${setting}`, () => {
        assert.throws(
          () => kafka(raw, env),
          (error: unknown) =>
            error instanceof ConfigError && error.setting === setting && error.message.includes(setting),
        );
      });
    }

    test('Kafka security settings without --kafka-brokers are refused, not ignored', () => {
      assert.throws(
        () => parseConfig({ 'kafka-tls-ca': 'ca.pem' }, '/srv', {}),
        (error: unknown) => error instanceof ConfigError && error.setting === '--kafka-tls-ca',
      );
    });
  });

  test('--bootstrap-from: peers tried in order, with their TLS CA, token file and stall limit; Kafka only', () => {
    assert.equal(parseConfig({ 'kafka-brokers': 'k:9092' }, '/srv', {}).bootstrap, null);
    assert.deepEqual(
      parseConfig(
        {
          'kafka-brokers': 'k:9092',
          'bootstrap-from': 'node-a:50051, [::1]:50052',
          'bootstrap-tls-ca': 'ca.pem',
          'bootstrap-token-file': '/run/secrets/token',
          'bootstrap-stall-timeout-ms': '2500',
        },
        '/srv',
        {},
      ).bootstrap,
      {
        peers: ['node-a:50051', '[::1]:50052'],
        tlsCaFile: '/srv/ca.pem',
        tokenFile: '/run/secrets/token',
        stallTimeoutMs: 2500,
      },
    );
    const byDefault = parseConfig({ 'kafka-brokers': 'k:9092', 'bootstrap-from': 'node-a:50051' }, '/srv', {});
    assert.equal(byDefault.bootstrap?.stallTimeoutMs, 60_000);
  });

  const invalid: Array<[string, Record<string, string>]> = [
    ['--bootstrap-from', { 'bootstrap-from': 'node-a:50051' }],
    ['--bootstrap-from', { 'kafka-brokers': 'k:9092', 'bootstrap-from': 'node-a' }],
    ['--bootstrap-tls-ca', { 'kafka-brokers': 'k:9092', 'bootstrap-tls-ca': 'ca.pem' }],
    ['--bootstrap-token-file', { 'kafka-brokers': 'k:9092', 'bootstrap-token-file': 'token' }],
    [
      '--bootstrap-stall-timeout-ms',
      { 'kafka-brokers': 'k:9092', 'bootstrap-from': 'node-a:50051', 'bootstrap-stall-timeout-ms': '0' },
    ],
    ['--tls-key', { 'tls-cert': 'a.crt' }],
    ['--tls-cert', { 'tls-key': 'a.key' }],
    ['--tls-client-ca', { 'tls-client-ca': 'ca.crt' }],
    ['--max-key-bytes', { 'max-key-bytes': '1979' }],
    ['--max-key-bytes', { 'max-key-bytes': '0' }],
    ['--max-value-bytes', { 'max-value-bytes': '1e6' }],
    ['--max-batch-keys', { 'max-batch-keys': '' }],
    ['--listen', { listen: '127.0.0.1:70000' }],
    ['--listen', { listen: 'localhost' }],
    ['--topic', { topic: 'bad topic' }],
    ['--kafka-brokers', { 'kafka-brokers': 'host-without-port' }],
    ['--log-level', { 'log-level': 'verbose' }],
    ['--request-timeout-ms', { 'request-timeout-ms': '0' }],
    ['--partitions', { partitions: '0' }],
    ['--replication-factor', { 'replication-factor': 'three' }],
    ['--kafka-partitioner', { 'kafka-brokers': 'k:9092', 'kafka-partitioner': 'crc32' }],
    ['--max-ready-lag', { 'max-ready-lag': '-1' }],
    ['--metrics-listen', { 'metrics-listen': '9464' }],
    ['--metrics-listen', { 'metrics-listen': '127.0.0.1:99999' }],
  ];
  for (const [setting, raw] of invalid) {
    test(`rejects ${JSON.stringify(raw)} naming ${setting}`, () => {
      assert.throws(
        () => parseConfig(raw, '/srv', {}),
        (error: unknown) =>
          error instanceof ConfigError && error.setting === setting && error.message.includes(setting),
      );
    });
  }

  test('environment variable names', () => {
    assert.equal(envVarOf('max-key-bytes'), 'KVS2_MAX_KEY_BYTES');
    assert.equal(envVarOf('kafka-brokers'), 'KVS2_KAFKA_BROKERS');
  });
});
