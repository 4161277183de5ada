import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { isKvs2Error } from '../../../src/errors.js';
import { KafkaLog } from '../../../src/log/kafka/kafka-log.js';
import type { LogPosition, LogRecord } from '../../../src/log/log.js';
import { OwnKafkaCluster } from '../../support/kafka-cluster.js';
import { kafkaBrokers, needsKafka } from '../../support/kafka-env.js';

/**
 * Stopping a broker would break every other test using the shared cluster, so this file starts a
 * one-broker cluster of its own. It runs only where the shared Kafka tests run (KAFKA_BROKERS set, or
 * CI), since it needs the same Java and jars.
 */
describe('KafkaLog through a broker outage', needsKafka(), () => {
  let cluster: OwnKafkaCluster;

  before(async () => {
    // Only to fail in CI without Kafka, like the other Kafka tests: this test runs its own brokers.
    kafkaBrokers();
    cluster = await OwnKafkaCluster.start(1);
  });

  after(async () => {
    await cluster?.stop();
  });

  test('appends retry until their deadline while the broker is down, are never written later, and work again', async (t) => {
    const log = new KafkaLog({
      brokers: cluster.brokers.split(','),
      topic: `kvs2-test-${randomUUID().slice(0, 8)}`,
      partitions: 3,
      clientId: 'kvs2-test-outage',
    });
    await log.open();
    const received: LogRecord[] = [];
    const stopReading = new AbortController();
    let readFailure: unknown;
    const reading = (async () => {
      for await (const batch of log.read(new Map(), stopReading.signal)) received.push(...batch.records);
    })().catch((error: unknown) => {
      readFailure = error;
    });
    try {
      await log.append(Buffer.from('before'), Buffer.from('1'), AbortSignal.timeout(15_000));

      await cluster.stopBroker(1);
      const started = Date.now();
      const outcomes = await Promise.all([
        settle(log.append(Buffer.from('during-short'), Buffer.from('2'), AbortSignal.timeout(1_000))),
        settle(log.append(Buffer.from('during-long'), Buffer.from('3'), AbortSignal.timeout(3_000))),
      ]);
      t.diagnostic(
        `down: appends settled after ${Date.now() - started} ms: ${outcomes.map((o) => String(o.ok || o.error)).join(' | ')}`,
      );
      for (const outcome of outcomes) {
        assert.equal(outcome.ok, false, 'an append never succeeds while the only broker is down');
        assert.ok(
          isKvs2Error(outcome.error) && outcome.error.code === 'DEADLINE_EXCEEDED',
          `an append keeps trying until its deadline: ${String(outcome.error)}`,
        );
      }

      const restarting = Date.now();
      await cluster.startBroker(1);
      const restarted = Date.now();
      const recovered = await appendOnceBack(log, Buffer.from('after'), Buffer.from('4'));
      const appended = Date.now();
      await waitFor(
        () => received.some((r) => r.partition === recovered.partition && r.offset === recovered.offset),
        20_000,
      );
      t.diagnostic(
        `up: restart took ${restarted - restarting} ms, the append ${appended - restarted} ms, ` +
          `reading it ${Date.now() - appended} ms more`,
      );
      assert.equal(readFailure, undefined, 'the read survived the outage');
      assert.deepEqual(
        received.filter((r) => r.key?.toString().startsWith('during')).map((r) => r.key?.toString()),
        [],
        'appends that failed were not written later',
      );
      assert.ok(received.some((r) => r.key?.toString() === 'before'));
    } finally {
      stopReading.abort();
      await reading;
      await log.close();
    }
  });

  test('conditional writes through an outage: a commit that cannot reach the broker is of unknown outcome, and the pool recovers', async (t) => {
    const log = new KafkaLog({
      brokers: cluster.brokers.split(','),
      topic: `kvs2-test-${randomUUID().slice(0, 8)}`,
      partitions: 1,
      clientId: 'kvs2-test-outage-cas',
      transactionalIdPrefix: `kvs2-test-${randomUUID().slice(0, 8)}`,
      transactionalPoolSize: 1,
    });
    await log.open();
    const received: LogRecord[] = [];
    const stopReading = new AbortController();
    const reading = (async () => {
      for await (const batch of log.read(new Map(), stopReading.signal)) received.push(...batch.records);
    })().catch(() => {});
    const write = (key: string) => [{ key: Buffer.from(key), value: Buffer.from('v') }];
    try {
      const before = await log.appendTentative(write('before'), AbortSignal.timeout(15_000));
      await before.commit();
      const stranded = await log.appendTentative(write('stranded'), AbortSignal.timeout(15_000));

      await cluster.stopBroker(1);
      const commit = await settle(stranded.commit());
      assert.ok(
        !commit.ok && isKvs2Error(commit.error) && commit.error.code === 'LOG_OUTCOME_UNKNOWN',
        `a commit the coordinator never answered has an unknown outcome: ${commit.ok || String(commit.error)}`,
      );
      const during = await settle(log.appendTentative(write('during'), AbortSignal.timeout(2_000)));
      assert.ok(
        !during.ok && isKvs2Error(during.error) && during.error.code === 'DEADLINE_EXCEEDED',
        `a conditional write while the broker is down fails within its deadline: ${during.ok || String(during.error)}`,
      );

      await cluster.startBroker(1);
      const restarted = Date.now();
      const after = await log.appendTentative(write('after'), AbortSignal.timeout(30_000));
      await after.commit();
      t.diagnostic(`a conditional write committed ${Date.now() - restarted} ms after the restart`);
      await waitFor(() => received.some((r) => r.offset === after.offset), 20_000);
      assert.deepEqual(
        received.map((r) => r.key?.toString()),
        ['before', 'after'],
        'the stranded and the failed writes are never delivered',
      );
    } finally {
      stopReading.abort();
      await reading;
      await log.close();
    }
  });
});

/** The first append after a restart may meet the broker still starting up: it has a deadline of 20 s. */
function appendOnceBack(log: KafkaLog, key: Buffer, value: Buffer): Promise<LogPosition> {
  return log.append(key, value, AbortSignal.timeout(20_000));
}

async function settle(append: Promise<unknown>): Promise<{ ok: true } | { ok: false; error: unknown }> {
  try {
    await append;
    return { ok: true };
  } catch (error) {
    return { ok: false, error };
  }
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
