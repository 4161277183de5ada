import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { IS_CONTROL, IS_TRANSACTIONAL } from '@platformatic/kafka';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { Kvs2Error } from '../../../src/errors.js';
import { KafkaLog } from '../../../src/log/kafka/kafka-log.js';
import type { KafkaLogOptions } from '../../../src/log/kafka/kafka-log-options.js';
import { decodePartition } from '../../../src/log/kafka/record-batches.js';
import type { LogWrite } from '../../../src/log/log.js';
import { kafkaBrokers, needsKafka } from '../../support/kafka-env.js';
import { TentativeWriterProcess } from '../../support/kafka-tentative-writer.js';
import { LogFollower, RawPartitionReader } from '../../support/kafka-transactions.js';

/**
 * KafkaLog.appendTentative, the Kafka side of compare-and-set (issue 18, docs/cas-on-kafka.md): records in a
 * transaction of their own, undecided until commit() or abort(), on the brokers the tests share. Durations
 * are diagnostics, never assertions.
 */

/**
 * The longest a partition stays stalled behind a writer that died mid-transaction: the 5 s transaction
 * timeout + the broker's check interval (1 s in the runner's brokers, 10 s in Kafka's default) + slack.
 */
const STALL_MS = 40_000;
const WAIT_MS = 20_000;

function writes(...pairs: Array<[string, string]>): LogWrite[] {
  return pairs.map(([key, value]) => ({ key: Buffer.from(key), value: Buffer.from(value) }));
}

function within(): AbortSignal {
  return AbortSignal.timeout(15_000);
}

function hasCode(code: string): (error: unknown) => boolean {
  return (error: unknown) => error instanceof Kvs2Error && error.code === code;
}

describe('KafkaLog.appendTentative: conditional writes in Kafka transactions (issue 18)', needsKafka(), () => {
  let brokers: string[];
  const closers: Array<() => Promise<unknown>> = [];

  before(() => {
    brokers = kafkaBrokers();
  });

  after(async () => {
    for (const close of closers.reverse()) await close().catch(() => {});
  });

  /** A KafkaLog on a topic (by default a new one-partition topic), open, and raw access to its partition 0. */
  async function openLog(
    options: Partial<KafkaLogOptions> = {},
    topic = `kvs2-tentative-${randomUUID().slice(0, 8)}`,
  ): Promise<{ log: KafkaLog; topic: string; raw: RawPartitionReader }> {
    const log = new KafkaLog({
      brokers,
      topic,
      partitions: 1,
      clientId: 'kvs2-test-tentative',
      fetchMaxWaitMs: 500,
      ...options,
    });
    closers.push(() => log.close());
    const identity = await log.open(AbortSignal.timeout(30_000));
    const raw = new RawPartitionReader(brokers, topic, identity.replace(/^kafka:/, ''));
    closers.push(() => raw.close());
    return { log, topic, raw };
  }

  function follow(log: KafkaLog): LogFollower {
    const follower = new LogFollower(log);
    closers.push(() => follower.stop());
    return follower;
  }

  async function appendPlain(log: KafkaLog, key: string, value: string): Promise<number> {
    return (await log.append(Buffer.from(key), Buffer.from(value), within())).offset;
  }

  /** What a read_committed fetch from `offset` gives kvs2 now: nothing at or past an open transaction. */
  async function committedFrom(raw: RawPartitionReader, offset: number) {
    const data = await raw.fetch(0, BigInt(offset), 'committed');
    const chunk = decodePartition(0, data, BigInt(offset));
    return { lastStableOffset: Number(data.lastStableOffset), records: chunk?.records ?? [] };
  }

  function delivered(follower: LogFollower, from = 0): Array<[number, string | undefined, string | undefined]> {
    return follower.records
      .filter((r) => r.offset >= from)
      .map((r) => [r.offset, r.key?.toString(), r.value?.toString()]);
  }

  test('commit makes the records readable at exactly offset..offset+n-1; until then readers stop at offset and a later plain append waits', async () => {
    const { log, raw } = await openLog();
    const follower = follow(log);
    const first = await appendPlain(log, 'before', 'b');
    const tentative = await log.appendTentative(writes(['a', '1'], ['b', '2'], ['c', '3']), within());
    const o = tentative.offset;
    assert.equal(tentative.partition, 0);
    assert.equal(o, first + 1);
    const plain = await appendPlain(log, 'plain', 'p');
    assert.equal(plain, o + 3, 'the plain record lands right after the undecided ones');

    await follower.waitFor(() => follower.position(0) === o, WAIT_MS, 'the reader at the undecided write');
    const held = await committedFrom(raw, o);
    assert.equal(held.lastStableOffset, o, 'readers stop at the undecided write');
    assert.deepEqual(held.records, []);
    assert.deepEqual(delivered(follower, o), [], 'nothing at or past it is delivered');

    await tentative.commit();
    await follower.waitFor(() => follower.records.some((r) => r.offset === plain), WAIT_MS, 'the plain record');
    assert.deepEqual(delivered(follower), [
      [first, 'before', 'b'],
      [o, 'a', '1'],
      [o + 1, 'b', '2'],
      [o + 2, 'c', '3'],
      [plain, 'plain', 'p'],
    ]);
    await tentative.abort();
    await tentative.commit();
  });

  test('abort leaves nothing readable; a plain append after it is delivered once it is aborted', async () => {
    const { log, raw } = await openLog();
    const follower = follow(log);
    const tentative = await log.appendTentative(writes(['x', 'never'], ['y', 'never']), within());
    const plain = await appendPlain(log, 'plain', 'p');
    const held = await committedFrom(raw, tentative.offset);
    assert.equal(held.lastStableOffset, tentative.offset);

    await tentative.abort();
    await follower.waitFor(() => follower.records.some((r) => r.offset === plain), WAIT_MS, 'the plain record');
    assert.deepEqual(delivered(follower), [[plain, 'plain', 'p']]);
    const written = await raw.allDataRecords(0);
    assert.deepEqual(
      written.filter((r) => r.offset < plain).map((r) => [r.offset, r.key]),
      [
        [tentative.offset, 'x'],
        [tentative.offset + 1, 'y'],
      ],
      'the aborted records are in the partition, never delivered',
    );
    await assert.rejects(tentative.commit(), hasCode('LOG_UNAVAILABLE'), 'a commit after the abort is refused');
    await tentative.abort();
  });

  test('several aborted and one committed tentative append of one node, read in one fetch: only the committed', async () => {
    // One transactional id, hence one producer id for every transaction, as in docs/cas-on-kafka.md claim 3.
    const { log, raw } = await openLog({ transactionalPoolSize: 1 });
    const plan: Array<{ keys: string[]; commit: boolean }> = [
      { keys: ['aborted-1a', 'aborted-1b'], commit: false },
      { keys: ['aborted-2'], commit: false },
      { keys: ['committed'], commit: true },
      { keys: ['aborted-3'], commit: false },
      { keys: ['aborted-4'], commit: false },
    ];
    for (const { keys, commit } of plan) {
      const tentative = await log.appendTentative(writes(...keys.map((key): [string, string] => [key, 'v'])), within());
      await (commit ? tentative.commit() : tentative.abort());
    }
    await appendPlain(log, 'plain', 'p');
    // Markers are written after EndTxn answers: wait until every transaction is decided.
    let end = await raw.fetch(0, 0n, 'uncommitted');
    for (const deadline = Date.now() + WAIT_MS; end.lastStableOffset < end.highWatermark; ) {
      if (Date.now() > deadline) throw new Error('the transactions were not all decided in time');
      end = await raw.fetch(0, 0n, 'uncommitted');
    }
    const producers = new Set(
      (end.records ?? [])
        .filter((b) => (b.attributes & IS_TRANSACTIONAL) !== 0 && (b.attributes & IS_CONTROL) === 0)
        .map((b) => b.producerId),
    );
    assert.equal(producers.size, 1, 'one producer wrote every transaction');

    const data = await raw.fetch(0, 0n, 'committed');
    const last = data.records?.at(-1);
    assert.ok(
      last !== undefined && last.firstOffset + BigInt(last.lastOffsetDelta) + 1n === end.highWatermark,
      'one fetch held it all',
    );
    assert.equal(data.abortedTransactions?.length, 4, 'the broker lists the four aborted transactions');
    assert.deepEqual(
      decodePartition(0, data, 0n)?.records.map((r) => r.key?.toString()),
      ['committed', 'plain'],
    );
    const follower = follow(log);
    await follower.waitFor(() => follower.position(0) === Number(end.highWatermark), WAIT_MS, 'the reader at the end');
    assert.deepEqual(
      follower.records.map((r) => r.key?.toString()),
      ['committed', 'plain'],
    );
  });

  test('a writer killed mid-transaction: a new KafkaLog with its prefix aborts the transaction in open()', async (t) => {
    const { log, topic, raw } = await openLog();
    const follower = follow(log);
    const prefix = `kvs2-test-${randomUUID().slice(0, 8)}`;
    const { writer, offset } = await TentativeWriterProcess.start(brokers, topic, prefix);
    closers.push(() => writer.kill());
    const plain = await appendPlain(log, 'after', 'p');
    await writer.kill();
    const killed = performance.now();
    const held = await committedFrom(raw, offset);

    const successor = new KafkaLog({
      brokers,
      topic,
      partitions: 1,
      clientId: 'kvs2-test-successor',
      transactionalIdPrefix: prefix,
      transactionalPoolSize: 1,
    });
    closers.push(() => successor.close());
    await successor.open(AbortSignal.timeout(30_000));
    const opened = performance.now();
    const released = await committedFrom(raw, offset);
    if (held.lastStableOffset === offset) {
      assert.ok(
        released.lastStableOffset > offset,
        'the transaction is aborted, and the partition readable past it, as soon as open() returns',
      );
    } else {
      // Only on a machine so slow that the transaction timeout struck between the kill and the check.
      t.diagnostic('the transaction timeout aborted the transaction before the successor opened');
    }
    await follower.waitFor(() => follower.records.some((r) => r.offset === plain), STALL_MS, 'the plain record');
    assert.ok(!follower.records.some((r) => r.offset === offset), 'the killed writer’s record is never delivered');
    assert.deepEqual(successor.transactionalIds, [`${prefix}-0`]);
    t.diagnostic(
      `open() returned ${(opened - killed).toFixed(0)} ms after the kill; the reader passed the record ` +
        `${((follower.movedAt(0) ?? Number.NaN) - killed).toFixed(0)} ms after it (transaction timeout 5000 ms)`,
    );

    // The successor writes on the ids it took over.
    const next = await successor.appendTentative(writes(['successor', 's']), within());
    await next.commit();
    await follower.waitFor(() => follower.records.some((r) => r.offset === next.offset), WAIT_MS, 'its record');
  });

  test('a writer killed mid-transaction, not restarted: the transaction timeout aborts it', async (t) => {
    const { log, topic } = await openLog();
    const follower = follow(log);
    const { writer, offset } = await TentativeWriterProcess.start(brokers, topic, `kvs2-test-${randomUUID()}`);
    closers.push(() => writer.kill());
    const plain = await appendPlain(log, 'after', 'p');
    await writer.kill();
    const killed = performance.now();
    await follower.waitFor(() => follower.records.some((r) => r.offset === plain), STALL_MS, 'the plain record');
    assert.ok(!follower.records.some((r) => r.offset === offset), 'the killed writer’s record is never delivered');
    t.diagnostic(
      `the partition stalled ${((follower.movedAt(0) ?? Number.NaN) - killed).toFixed(0)} ms after the kill ` +
        '(transaction timeout 5000 ms + the broker’s transaction.abort.timed.out.transaction.cleanup.interval.ms)',
    );
  });

  test('a writer frozen (SIGSTOP) past the transaction timeout: its commit is refused and its record never shows', async (t) => {
    const { log, topic, raw } = await openLog();
    const follower = follow(log);
    const { writer, offset } = await TentativeWriterProcess.start(brokers, topic, `kvs2-test-${randomUUID()}`);
    closers.push(() => writer.kill());
    writer.pause();
    const plain = await appendPlain(log, 'after', 'p');
    // The coordinator aborts the frozen writer's transaction once it times out: the partition moves on.
    await follower.waitFor(() => follower.records.some((r) => r.offset === plain), STALL_MS, 'the plain record');
    writer.resume();
    const report = await writer.commit();
    assert.equal(report.outcome, 'rejected', 'the commit is refused');
    assert.ok(
      report.code === 'LOG_OUTCOME_UNKNOWN' || report.code === 'LOG_UNAVAILABLE',
      `outcome unknown or aborted, not ${report.code}`,
    );
    const later = await appendPlain(log, 'later', 'l');
    await follower.waitFor(() => follower.records.some((r) => r.offset === later), WAIT_MS, 'a later record');
    assert.ok(!follower.records.some((r) => r.offset === offset), 'the frozen writer’s record is never delivered');
    assert.deepEqual(
      (await committedFrom(raw, 0)).records.map((r) => r.key?.toString()),
      ['after', 'later'],
    );
    t.diagnostic(`the frozen writer's commit: ${report.code}: ${report.message}`);
  });

  test('a commit refused because another KafkaLog took the transactional id over is of unknown outcome', async () => {
    const prefix = `kvs2-test-${randomUUID().slice(0, 8)}`;
    const registry = new Registry();
    const metrics = { registry, client: { Counter, Gauge, Histogram, Registry } };
    const { log, topic } = await openLog({ transactionalIdPrefix: prefix, transactionalPoolSize: 1, metrics });
    const follower = follow(log);
    const fenced = await log.appendTentative(writes(['fenced', 'f']), within());
    // A second log with the same prefix (a node started twice on one identity) aborts it at open().
    await openLog({ transactionalIdPrefix: prefix, transactionalPoolSize: 1 }, topic);
    await assert.rejects(fenced.commit(), hasCode('LOG_OUTCOME_UNKNOWN'));
    const plain = await appendPlain(log, 'plain', 'p');
    await follower.waitFor(() => follower.records.some((r) => r.offset === plain), WAIT_MS, 'the plain record');
    assert.deepEqual(
      follower.records.map((r) => r.key?.toString()),
      ['plain'],
    );
    const counted = await registry.getSingleMetric('kvs2_kafka_transactions')?.get();
    assert.deepEqual(
      (counted?.values ?? []).map((v) => [v.labels.outcome, v.value]),
      [['unknown', 1]],
    );
  });

  test('calls beyond the pool wait for a transactional id; one that gives up meanwhile writes nothing', async () => {
    const { log, raw } = await openLog({ transactionalPoolSize: 1 });
    const follower = follow(log);
    const first = await log.appendTentative(writes(['first-a', '1'], ['first-b', '2']), within());
    let secondSettled = false;
    const second = log.appendTentative(writes(['second', '2']), within());
    second.then(
      () => {
        secondSettled = true;
      },
      () => {
        secondSettled = true;
      },
    );
    const giveUp = new AbortController();
    const third = log.appendTentative(writes(['third', '3']), giveUp.signal);
    giveUp.abort();
    await assert.rejects(third, hasCode('CANCELLED'));
    assert.equal(secondSettled, false, 'the second waits for the only id');

    await first.commit();
    const next = await second;
    // first's records at o and o+1, its commit marker at o+2: the second produced after the first's verdict.
    assert.ok(next.offset >= first.offset + 3, `the second wrote at ${next.offset}, after the first's commit`);
    await next.commit();
    await follower.waitFor(() => follower.records.some((r) => r.offset === next.offset), WAIT_MS, 'the second');
    assert.deepEqual(
      follower.records.map((r) => r.key?.toString()),
      ['first-a', 'first-b', 'second'],
    );
    assert.ok(!(await raw.allDataRecords(0)).some((r) => r.key === 'third'), 'the one that gave up wrote nothing');
  });

  test('concurrent conditional writes share the pool and each is delivered once; records of several partitions are refused', async () => {
    const { log } = await openLog({ partitions: 4, transactionalPoolSize: 2 });
    const follower = follow(log);
    const keys = Array.from({ length: 6 }, (_, i) => `k-${i}`);
    const written = await Promise.all(
      keys.map(async (key) => {
        const tentative = await log.appendTentative(writes([key, 'v']), within());
        assert.equal(tentative.partition, log.partitionOf(Buffer.from(key)));
        await tentative.commit();
        return tentative;
      }),
    );
    await follower.waitFor(
      () => written.every((w) => follower.records.some((r) => r.partition === w.partition && r.offset === w.offset)),
      WAIT_MS,
      'every committed record',
    );
    assert.deepEqual(follower.records.map((r) => r.key?.toString()).sort(), [...keys].sort());

    const byPartition = new Map<number, string>();
    for (let i = 0; byPartition.size < 2; i++) byPartition.set(log.partitionOf(Buffer.from(`p-${i}`)), `p-${i}`);
    const [one, other] = [...byPartition.values()] as [string, string];
    await assert.rejects(log.appendTentative(writes([one, 'v'], [other, 'v']), within()), hasCode('INVALID_ARGUMENT'));
    await assert.rejects(log.appendTentative([], within()), hasCode('INVALID_ARGUMENT'));
  });

  test('close() aborts the undecided writes; transactions are counted by outcome', async () => {
    const registry = new Registry();
    const metrics = { registry, client: { Counter, Gauge, Histogram, Registry } };
    const { log, topic } = await openLog({ metrics });
    const reader = (await openLog({}, topic)).log;
    const follower = follow(reader);
    const committed = await log.appendTentative(writes(['committed', 'c']), within());
    await committed.commit();
    const aborted = await log.appendTentative(writes(['aborted', 'a']), within());
    await aborted.abort();
    const open = await log.appendTentative(writes(['open', 'o']), within());
    await log.close();
    await assert.rejects(open.commit(), hasCode('SHUTTING_DOWN'));
    await assert.rejects(log.appendTentative(writes(['late', 'l']), within()), hasCode('SHUTTING_DOWN'));

    const plain = await appendPlain(reader, 'plain', 'p');
    await follower.waitFor(() => follower.records.some((r) => r.offset === plain), WAIT_MS, 'the plain record');
    assert.deepEqual(
      follower.records.map((r) => r.key?.toString()),
      ['committed', 'plain'],
    );
    const counted = await registry.getSingleMetric('kvs2_kafka_transactions')?.get();
    const byOutcome = Object.fromEntries((counted?.values ?? []).map((v) => [v.labels.outcome, v.value]));
    assert.deepEqual(byOutcome, { committed: 1, aborted: 2 });
  });
});
