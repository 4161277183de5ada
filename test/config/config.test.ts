import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { envVarOf, parseConfig } from '../../src/config/config.js';
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
    });
    assert.equal(parseConfig({ 'kafka-brokers': 'k:9092', 'replication-factor': '2' }).kafka?.replicationFactor, 2);
    assert.deepEqual(config.listen, { host: '::1', port: 7000 });
    assert.equal(config.dataDir, '/var/lib/kvs2');
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

  const invalid: Array<[string, Record<string, string>]> = [
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
    ['--max-ready-lag', { 'max-ready-lag': '-1' }],
    ['--metrics-listen', { 'metrics-listen': '9464' }],
    ['--metrics-listen', { 'metrics-listen': '127.0.0.1:99999' }],
  ];
  for (const [setting, raw] of invalid) {
    test(`rejects ${JSON.stringify(raw)} naming ${setting}`, () => {
      assert.throws(
        () => parseConfig(raw),
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
