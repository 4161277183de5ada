import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Admin, IS_CONTROL, IS_TRANSACTIONAL, producerTransactionsChannel } from '@platformatic/kafka';
import { describeKafkaError, hasBrokerError } from '../../../src/log/kafka/kafka-errors.js';
import { KafkaLog } from '../../../src/log/kafka/kafka-log.js';
import { decodePartition } from '../../../src/log/kafka/record-batches.js';
import { OwnKafkaCluster } from '../../support/kafka-cluster.js';
import { kafkaBrokers, needsKafka } from '../../support/kafka-env.js';
import {
  beginFencing,
  createTransactionalProducer,
  LogFollower,
  type OpenTransaction,
  OrphanedTransactionWriter,
  produceOne,
  RawPartitionReader,
  summarize,
  type TransactionalProducer,
  type TransactionalProducerOptions,
} from '../../support/kafka-transactions.js';

/**
 * The claims compare-and-set on Kafka (issue 18, design d of shared/notes/cas-on-kafka.md) rests on,
 * checked against a real broker: docs/cas-on-kafka.md says what each test shows and what it measured.
 * Durations go to diagnostics, never into assertions.
 *
 * A one-broker cluster of this file's own, since claim 5 needs a broker setting: the coordinator looks for
 * timed-out transactions every ABORT_CHECK_MS instead of every 10 s.
 */
const ABORT_CHECK_MS = 500;
/** How long an idle reader's fetch waits at the broker: long enough to tell a prompt answer from a timeout. */
const FETCH_MAX_WAIT_MS = 3_000;
const WAIT_MS = 20_000;
/** Compaction as eager as Kafka allows: segments roll every 100 ms and any dirt makes a partition cleanable. */
const EAGER_COMPACTION = {
  'cleanup.policy': 'compact',
  'segment.ms': '100',
  'min.cleanable.dirty.ratio': '0.01',
  'min.compaction.lag.ms': '0',
  'delete.retention.ms': '100',
};

describe('Kafka transactions as compare-and-set needs them (issue 18)', needsKafka(), () => {
  let cluster: OwnKafkaCluster;
  let brokers: string[];
  let admin: Admin;
  const closers: Array<() => Promise<unknown>> = [];

  before(async () => {
    // Only to fail in CI without Kafka, like the other Kafka tests: this file runs its own broker.
    kafkaBrokers();
    cluster = await OwnKafkaCluster.start(1, [
      `transaction.abort.timed.out.transaction.cleanup.interval.ms=${ABORT_CHECK_MS}`,
    ]);
    brokers = cluster.brokers.split(',');
    admin = new Admin({ clientId: 'kvs2-test-admin', bootstrapBrokers: brokers });
  });

  after(async () => {
    for (const close of closers.reverse()) await close().catch(() => {});
    await admin?.close().catch(() => {});
    await cluster?.stop();
  });

  /** A KafkaLog on a new one-partition topic (created with `configs` first if given), and raw access to it. */
  async function openLog(configs?: Record<string, string>): Promise<{
    log: KafkaLog;
    topic: string;
    raw: RawPartitionReader;
  }> {
    const topic = `kvs2-txn-${randomUUID().slice(0, 8)}`;
    if (configs !== undefined) {
      await admin.createTopics({
        topics: [topic],
        partitions: 1,
        replicas: 1,
        configs: Object.entries(configs).map(([name, value]) => ({ name, value })),
      });
    }
    const log = new KafkaLog({
      brokers,
      topic,
      partitions: 1,
      clientId: 'kvs2-test-txn',
      fetchMaxWaitMs: FETCH_MAX_WAIT_MS,
      // Every fetch a long poll: what the broker does when the last stable offset moves is then visible.
      fetchFlowingWaitMs: 0,
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

  function producer(transactionalId: string, options: TransactionalProducerOptions = {}): TransactionalProducer {
    const created = createTransactionalProducer(brokers, transactionalId, options);
    closers.push(() => created.close(true));
    return created;
  }

  async function appendPlain(log: KafkaLog, key: string, value: string): Promise<number> {
    return (await log.append(Buffer.from(key), Buffer.from(value), AbortSignal.timeout(15_000))).offset;
  }

  /** What a read_committed fetch from `offset` gives kvs2 now: nothing at or past an open transaction. */
  async function committedFrom(raw: RawPartitionReader, offset: number) {
    const data = await raw.fetch(0, BigInt(offset), 'committed');
    const chunk = decodePartition(0, data, BigInt(offset));
    return { lastStableOffset: Number(data.lastStableOffset), records: chunk?.records ?? [] };
  }

  test('1: a transactional producer learns its record offset from the produce response, before committing', async (t) => {
    const { log, topic, raw } = await openLog();
    await appendPlain(log, 'plain-0', 'p');
    await appendPlain(log, 'plain-1', 'p');
    const writer = producer(`kvs2-test-${randomUUID()}`);
    const transaction = await beginFencing(writer);
    const o = await produceOne(transaction, topic, 0, 'cas-key', 'cas-value');
    assert.equal(o, 2, 'the produce response gives the offset after the two plain records');

    // Before the commit the broker holds the record at o, and the last stable offset stops at it.
    const uncommitted = await raw.fetch(0, BigInt(o), 'uncommitted');
    const batch = (uncommitted.records ?? []).find((b) => b.firstOffset === BigInt(o));
    assert.ok(batch !== undefined, 'a batch starts at o');
    assert.equal(batch.records[0]?.key?.toString(), 'cas-key');
    assert.ok((batch.attributes & IS_TRANSACTIONAL) !== 0, 'the batch is transactional');
    assert.equal(batch.producerId, writer.producerId, "it is this producer's");
    assert.equal(Number(uncommitted.highWatermark), o + 1);
    assert.equal(Number(uncommitted.lastStableOffset), o, 'the open transaction holds the last stable offset at o');

    await transaction.commit();
    const follower = follow(log);
    await follower.waitFor(() => follower.records.some((r) => r.offset === o), WAIT_MS, 'the committed record');
    const record = follower.records.find((r) => r.offset === o);
    assert.equal(record?.key?.toString(), 'cas-key');
    assert.equal(record?.value?.toString(), 'cas-value');
    t.diagnostic(`producer id ${writer.producerId}, epoch ${writer.producerEpoch}, record at offset ${o}`);
  });

  test('2: read_committed stops at the first offset of an open transaction and reaches exactly o once earlier ones end', async (t) => {
    const { log, topic, raw } = await openLog();
    const follower = follow(log);
    const earlier = producer(`kvs2-test-earlier-${randomUUID()}`);
    const cas = producer(`kvs2-test-cas-${randomUUID()}`);
    await appendPlain(log, 'before', 'p');
    const wakeLags: number[] = [];
    const sinceEndCall: number[] = [];
    for (let round = 0; round < 10; round++) {
      const commitEarlier = round % 2 === 0;
      const earlierTx = await beginFencing(earlier);
      const a = await produceOne(earlierTx, topic, 0, `earlier-${round}`, 'e');
      const p = await appendPlain(log, `plain-${round}`, 'p');
      const casTx = await beginFencing(cas);
      const o = await produceOne(casTx, topic, 0, `cas-${round}`, 'c');
      assert.ok(a < p && p < o);

      await follower.waitFor(() => follower.position(0) === a, WAIT_MS, `the reader at the earlier transaction (${a})`);
      const held = await committedFrom(raw, a);
      assert.equal(
        held.lastStableOffset,
        a,
        'the last stable offset is the first offset of the earliest open transaction',
      );
      assert.deepEqual(held.records, [], 'a read_committed fetch from there brings nothing');
      assert.ok(!follower.records.some((r) => r.offset >= a), 'nothing at or past the open transaction was delivered');

      const endCalled = performance.now();
      await (commitEarlier ? earlierTx.commit() : earlierTx.abort());
      const ended = performance.now();
      await follower.waitFor(() => follower.position(0) >= o, WAIT_MS, `the reader at o (${o})`);
      assert.equal(follower.position(0), o, 'the reader reaches exactly o: everything below is delivered or skipped');
      const movedAt = follower.movedAt(0) ?? Number.NaN;
      wakeLags.push(movedAt - ended);
      sinceEndCall.push(movedAt - endCalled);
      assert.deepEqual(
        follower.records.filter((r) => r.offset >= a).map((r) => r.key?.toString()),
        commitEarlier ? [`earlier-${round}`, `plain-${round}`] : [`plain-${round}`],
        'below o: the earlier record if it committed, and the plain one',
      );
      const stillHeld = await committedFrom(raw, o);
      assert.equal(stillHeld.lastStableOffset, o, 'the open CAS transaction now holds the last stable offset at o');
      assert.deepEqual(stillHeld.records, []);

      await casTx.commit();
      await follower.waitFor(() => follower.records.some((r) => r.offset === o), WAIT_MS, 'the committed CAS record');
    }
    t.diagnostic(`reader at o after the earlier EndTxn answered: ${summarize(wakeLags)}`);
    t.diagnostic(`reader at o after commit()/abort() was called: ${summarize(sinceEndCall)}`);
    t.diagnostic(`(an idle fetch waits up to ${FETCH_MAX_WAIT_MS} ms at the broker)`);
  });

  test('3: several aborted and one committed transaction of one producer in one fetch deliver only the committed records', async (t) => {
    const { log, topic, raw } = await openLog();
    const writer = producer(`kvs2-test-${randomUUID()}`);
    const plan: Array<{ keys: string[]; commit: boolean }> = [
      { keys: ['aborted-1a', 'aborted-1b'], commit: false },
      { keys: ['aborted-2'], commit: false },
      { keys: ['committed'], commit: true },
      { keys: ['aborted-3'], commit: false },
      { keys: ['aborted-4'], commit: false },
    ];
    for (const { keys, commit } of plan) {
      const transaction = await beginFencing(writer);
      for (const key of keys) await produceOne(transaction, topic, 0, key, 'v');
      await (commit ? transaction.commit() : transaction.abort());
    }
    const plainOffset = await appendPlain(log, 'plain', 'p');
    // Markers are written after EndTxn answers: wait until every transaction is decided.
    let end = await raw.fetch(0, 0n, 'uncommitted');
    for (const deadline = Date.now() + WAIT_MS; end.lastStableOffset < end.highWatermark; ) {
      if (Date.now() > deadline) throw new Error('the transactions were not all decided in time');
      end = await raw.fetch(0, 0n, 'uncommitted');
    }
    const logEnd = end.highWatermark;

    // One read_committed fetch through the client kvs2 uses, then kvs2's own filter.
    const data = await raw.fetch(0, 0n, 'committed');
    const batches = data.records ?? [];
    const last = batches.at(-1);
    assert.ok(
      last !== undefined && last.firstOffset + BigInt(last.lastOffsetDelta) + 1n === logEnd,
      'one fetch held it all',
    );
    assert.equal(data.abortedTransactions?.length, 4, 'the broker lists the four aborted transactions');
    const abortedLeftIn = batches.filter(
      (b) =>
        (b.attributes & IS_CONTROL) === 0 &&
        b.producerId === writer.producerId &&
        b.records.some((r) => r.key?.toString().startsWith('aborted')),
    );
    t.diagnostic(
      `the library's own read_committed filter left ${abortedLeftIn.length} aborted data batch(es) in: ` +
        abortedLeftIn.map((b) => b.records.map((r) => r.key?.toString()).join('+')).join(', '),
    );
    const chunk = decodePartition(0, data, 0n);
    assert.deepEqual(
      chunk?.records.map((r) => r.key?.toString()),
      ['committed', 'plain'],
    );
    assert.equal(chunk?.nextOffset, logEnd);

    const follower = follow(log);
    await follower.waitFor(() => follower.position(0) === Number(logEnd), WAIT_MS, 'the reader at the end');
    assert.deepEqual(
      follower.records.map((r) => r.key?.toString()),
      ['committed', 'plain'],
    );
    assert.equal(follower.records.at(-1)?.offset, plainOffset);
  });

  test('4: a new producer with the same transactional id aborts the open transaction at once; the old one cannot commit', async (t) => {
    const { log, topic } = await openLog();
    const follower = follow(log);
    const transactionalId = `kvs2-test-${randomUUID()}`;
    const old = producer(transactionalId);
    const oldTx = await beginFencing(old);
    const o = await produceOne(oldTx, topic, 0, 'zombie', 'never visible');
    await follower.waitFor(() => follower.position(0) === o, WAIT_MS, 'the reader at the open transaction');
    const oldIdentity = `${old.producerId}/${old.producerEpoch}`;

    const successor = producer(transactionalId);
    const fencing = performance.now();
    const successorTx = await beginFencing(successor);
    const initialized = performance.now();
    await follower.waitFor(() => follower.position(0) > o, WAIT_MS, 'the old transaction aborted');
    const passed = follower.movedAt(0) ?? Number.NaN;
    assert.ok(!follower.records.some((r) => r.offset === o), 'the fenced record is never delivered');
    assert.equal(successor.producerId, old.producerId, 'the same producer id...');
    assert.ok((successor.producerEpoch ?? 0) > (old.producerEpoch ?? 0), '...with a higher epoch');

    let commitError: unknown;
    await assert.rejects(
      oldTx.commit().catch((error: unknown) => {
        commitError = error;
        throw error;
      }),
      (error: unknown) => hasBrokerError(error, 'PRODUCER_FENCED'),
      'the old commit is refused',
    );
    const o2 = await produceOne(successorTx, topic, 0, 'successor', 'visible');
    await successorTx.commit();
    await follower.waitFor(() => follower.records.some((r) => r.offset === o2), WAIT_MS, "the successor's record");
    assert.deepEqual(
      follower.records.map((r) => r.key?.toString()),
      ['successor'],
    );

    // The library keeps a transaction refused with PRODUCER_FENCED open on its side; a further send fails too.
    await oldTx.cancel();
    let sendError: unknown;
    try {
      const again = await old.beginTransaction();
      await produceOne(again, topic, 0, 'zombie-again', 'never visible');
    } catch (error) {
      sendError = error;
    }
    assert.ok(sendError !== undefined, 'the fenced producer cannot write in a transaction again');

    // What the library does without beginFencing's producer id -1: it sends producer id 0, epoch 0.
    const naive = producer(transactionalId);
    let naiveOutcome = 'began';
    try {
      await naive.beginTransaction();
    } catch (error) {
      naiveOutcome = describeKafkaError(error);
    }
    t.diagnostic(
      `old producer ${oldIdentity}, successor ${successor.producerId}/${successor.producerEpoch}; ` +
        `InitProducerId took ${(initialized - fencing).toFixed(1)} ms, the reader passed the fenced record ` +
        `${(passed - fencing).toFixed(1)} ms after it was sent`,
    );
    t.diagnostic(`old commit: ${describeKafkaError(commitError)}`);
    t.diagnostic(`old producer's next transaction: ${describeKafkaError(sendError)}`);
    t.diagnostic(`a third producer with the library's default InitProducerId (id 0, epoch 0): ${naiveOutcome}`);
  });

  test('5: a writer killed mid-transaction is aborted after its transaction timeout; a live one past it cannot commit', async (t) => {
    const timeoutMs = 2_000;
    const { log, topic } = await openLog();
    const follower = follow(log);
    const started = performance.now();
    const { writer, offset: o } = await OrphanedTransactionWriter.start(
      brokers,
      `kvs2-test-${randomUUID()}`,
      topic,
      0,
      timeoutMs,
    );
    closers.push(() => writer.kill());
    const opened = performance.now();
    const p = await appendPlain(log, 'plain-after', 'p');
    await follower.waitFor(() => follower.position(0) === o, WAIT_MS, 'the reader at the open transaction');
    await writer.kill();
    const killed = performance.now();
    await follower.waitFor(() => follower.records.some((r) => r.offset === p), 30_000, 'the plain record after it');
    const released = follower.movedAt(0) ?? Number.NaN;
    assert.ok(!follower.records.some((r) => r.offset === o), 'the killed writer’s record is never delivered');
    t.diagnostic(
      `transaction.timeout.ms ${timeoutMs}, cleanup interval ${ABORT_CHECK_MS} ms: the partition stalled ` +
        `${(released - opened).toFixed(0)} ms after the writer reported its offset (process start to offset ` +
        `${(opened - started).toFixed(0)} ms), ${(released - killed).toFixed(0)} ms after kill -9`,
    );

    // A live producer whose transaction outlives its timeout is aborted the same way, and fenced.
    const slowId = `kvs2-test-${randomUUID()}`;
    const slow = producer(slowId, { transactionTimeoutMs: timeoutMs });
    const slowTx = await beginFencing(slow);
    const o2 = await produceOne(slowTx, topic, 0, 'too-slow', 'never visible');
    const slowOpened = performance.now();
    const p2 = await appendPlain(log, 'plain-after-slow', 'p');
    await follower.waitFor(() => follower.records.some((r) => r.offset === p2), 30_000, 'the plain record after it');
    const slowReleased = follower.movedAt(0) ?? Number.NaN;
    let commitError: unknown;
    await assert.rejects(
      slowTx.commit().catch((error: unknown) => {
        commitError = error;
        throw error;
      }),
      'a transaction the coordinator aborted cannot commit',
    );
    assert.ok(!follower.records.some((r) => r.offset === o2));
    // The fenced producer object is spent; a new one with the same transactional id carries on.
    const renewed = producer(slowId, { transactionTimeoutMs: timeoutMs });
    const renewedTx = await beginFencing(renewed);
    const o3 = await produceOne(renewedTx, topic, 0, 'renewed', 'visible');
    await renewedTx.commit();
    await follower.waitFor(() => follower.records.some((r) => r.offset === o3), WAIT_MS, 'the renewed record');
    t.diagnostic(
      `live producer: aborted ${(slowReleased - slowOpened).toFixed(0)} ms after its produce; its commit: ` +
        describeKafkaError(commitError),
    );

    // The broker takes any timeout from 1 ms to transaction.max.timeout.ms (15 min by default).
    await assert.rejects(
      beginFencing(producer(`kvs2-test-${randomUUID()}`, { transactionTimeoutMs: 0 })),
      (error: unknown) => hasBrokerError(error, 'INVALID_TRANSACTION_TIMEOUT'),
    );
    await assert.rejects(
      beginFencing(producer(`kvs2-test-${randomUUID()}`, { transactionTimeoutMs: 15 * 60_000 + 1 })),
      (error: unknown) => hasBrokerError(error, 'INVALID_TRANSACTION_TIMEOUT'),
    );
    await beginFencing(producer(`kvs2-test-${randomUUID()}`, { transactionTimeoutMs: 1 }));
  });

  test('6: compaction keeps the committed value of a key whose last record aborted, at its offset, and removes aborted records', async (t) => {
    const { log, topic, raw } = await openLog(EAGER_COMPACTION);
    const writer = producer(`kvs2-test-${randomUUID()}`);
    const write = async (key: string, value: string, commit: boolean): Promise<number> => {
      const transaction = await beginFencing(writer);
      const offset = await produceOne(transaction, topic, 0, key, value);
      await (commit ? transaction.commit() : transaction.abort());
      return offset;
    };
    const k1 = await write('k', 'v1', true);
    const k2 = await write('k', 'v2', true);
    const k3 = await write('k', 'v3-aborted', false);
    const l1 = await write('l', 'l1', true);
    const m1 = await write('m', 'm1-aborted', false);
    const n1 = await appendPlain(log, 'n', 'n1');
    // Each transaction takes its record's offset and its marker's (the cleaner may already be at work).
    assert.deepEqual([k1, k2, k3, l1, m1, n1], [0, 2, 4, 6, 8, 10]);

    // Keep the log moving so that segments roll and the cleaner runs, until it has removed the superseded
    // value and both aborted records.
    const gone = [k1, k3, m1];
    let filler = 0;
    const started = Date.now();
    let current = await raw.allDataRecords(0);
    for (const deadline = Date.now() + 90_000; gone.some((offset) => current.some((r) => r.offset === offset)); ) {
      if (Date.now() > deadline) throw new Error(`compaction did not remove offsets ${gone.join(', ')} in time`);
      await appendPlain(log, `filler-${filler++ % 3}`, 'x');
      await new Promise((resolve) => setTimeout(resolve, 200));
      current = await raw.allDataRecords(0);
    }
    t.diagnostic(`the cleaner removed them after ${Date.now() - started} ms and ${filler} filler records`);
    const survivors = current.filter((r) => !r.key.startsWith('filler'));
    assert.deepEqual(survivors, [
      { offset: k2, key: 'k', value: 'v2' },
      { offset: l1, key: 'l', value: 'l1' },
      { offset: n1, key: 'n', value: 'n1' },
    ]);

    // A node bootstrapping now builds the same key → (value, version) map.
    const follower = follow(log);
    const end = (await raw.fetch(0, 0n, 'uncommitted')).highWatermark;
    await follower.waitFor(() => follower.position(0) >= Number(end), WAIT_MS, 'a fresh reader at the end');
    const state = new Map<string, { value: string; version: number }>();
    for (const r of follower.records)
      state.set(r.key?.toString() ?? '', { value: r.value?.toString() ?? '', version: r.offset });
    assert.deepEqual(state.get('k'), { value: 'v2', version: k2 });
    assert.deepEqual(state.get('l'), { value: 'l1', version: l1 });
    assert.deepEqual(state.get('n'), { value: 'n1', version: n1 });
    assert.equal(state.has('m'), false);
  });

  test('6b: the cleaner never cleans past an open transaction; once it aborts, cleaning goes on past it', async (t) => {
    const { log, topic, raw } = await openLog(EAGER_COMPACTION);
    const present = async (offset: number) => (await raw.allDataRecords(0)).some((r) => r.offset === offset);
    const x1 = await appendPlain(log, 'x', 'x1');
    await appendPlain(log, 'x', 'x2');
    // Past segment.ms, so that the transaction's record starts a segment of its own.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const writer = producer(`kvs2-test-${randomUUID()}`, { transactionTimeoutMs: 60_000 });
    const open = await beginFencing(writer);
    const o = await produceOne(open, topic, 0, 'j', 'undecided');
    const y1 = await appendPlain(log, 'y', 'y1');
    await appendPlain(log, 'y', 'y2');

    // The cleaner runs below the transaction: the superseded x1 goes...
    let filler = 0;
    const keepRolling = async (done: () => Promise<boolean>, what: string): Promise<void> => {
      for (const deadline = Date.now() + 50_000; !(await done()); ) {
        if (Date.now() > deadline) throw new Error(`${what}: not within 50 s`);
        await appendPlain(log, `filler-${filler++ % 3}`, 'x');
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    };
    const started = Date.now();
    await keepRolling(async () => !(await present(x1)), 'the cleaner removing x1 below the open transaction');
    // ...but not past it: y1, superseded after the transaction's first offset, stays, and so does the record.
    assert.equal(await present(y1), true, 'nothing past the last stable offset was cleaned');
    assert.equal(await present(o), true);
    const belowOnly = Date.now() - started;

    await open.abort();
    await keepRolling(async () => !(await present(y1)) && !(await present(o)), 'cleaning past the aborted transaction');
    t.diagnostic(
      `x1 cleaned after ${belowOnly} ms while the transaction was open; y1 and the aborted record after the abort`,
    );
  });

  test('7: a plain record between open transactions shows once the last stable offset passes it, and survives an abort', async () => {
    const { log, topic, raw } = await openLog();
    const follower = follow(log);
    const first = producer(`kvs2-test-${randomUUID()}`);
    const second = producer(`kvs2-test-${randomUUID()}`);
    const firstTx = await beginFencing(first);
    const a = await produceOne(firstTx, topic, 0, 'aborted', 'x');
    const p1 = await appendPlain(log, 'plain-1', 'p1');
    const secondTx = await beginFencing(second);
    const b = await produceOne(secondTx, topic, 0, 'committed', 'y');
    const p2 = await appendPlain(log, 'plain-2', 'p2');
    assert.deepEqual([a, p1, b, p2], [0, 1, 2, 3]);

    await follower.waitFor(() => follower.position(0) === a, WAIT_MS, 'the reader at the first open transaction');
    const held = await committedFrom(raw, a);
    assert.equal(held.lastStableOffset, a);
    assert.deepEqual(held.records, [], 'the plain records are not visible yet');

    await firstTx.abort();
    await follower.waitFor(() => follower.position(0) >= b, WAIT_MS, 'the reader at the second transaction');
    assert.equal(follower.position(0), b);
    assert.deepEqual(
      follower.records.map((r) => [r.offset, r.key?.toString()]),
      [[p1, 'plain-1']],
      'the plain record after an aborted transaction is delivered, the aborted one is not',
    );

    await secondTx.commit();
    await follower.waitFor(() => follower.records.some((r) => r.offset === p2), WAIT_MS, 'the last plain record');
    assert.deepEqual(
      follower.records.map((r) => [r.offset, r.key?.toString()]),
      [
        [p1, 'plain-1'],
        [b, 'committed'],
        [p2, 'plain-2'],
      ],
    );
  });

  test('8: costs of a one-record transaction, one open transaction per transactional id, concurrency through several ids', async (t) => {
    const { log, topic } = await openLog();
    const retried = new Map<string, number>();
    const countRetry = (operation: string, error: Error): void => {
      const why = `${operation}: ${describeKafkaError(error)}`;
      retried.set(why, (retried.get(why) ?? 0) + 1);
    };
    const writer = producer(`kvs2-test-${randomUUID()}`, { onRetry: countRetry });
    const addPartitions: number[] = [];
    const started = new WeakMap<object, number>();
    const timing = {
      start: (context: unknown) => {
        if (typeof context === 'object' && context !== null) started.set(context, performance.now());
      },
      end: () => {},
      asyncStart: (context: unknown) => {
        if (typeof context !== 'object' || context === null) return;
        const since = started.get(context);
        if (since !== undefined && Reflect.get(context, 'operation') === 'addPartitions') {
          addPartitions.push(performance.now() - since);
        }
      },
      asyncEnd: () => {},
      error: () => {},
    };
    producerTransactionsChannel.subscribe(timing);
    const sends: number[] = [];
    const commits: number[] = [];
    const totals: number[] = [];
    const committed: number[] = [];
    try {
      for (let i = 0; i < 220; i++) {
        const t0 = performance.now();
        const transaction = await beginFencing(writer);
        const t1 = performance.now();
        const offset = await produceOne(transaction, topic, 0, `k-${i}`, 'v');
        const t2 = performance.now();
        await transaction.commit();
        const t3 = performance.now();
        committed.push(offset);
        // The first 20 warm up connections and the JIT.
        if (i >= 20) {
          sends.push(t2 - t1);
          commits.push(t3 - t2);
          totals.push(t3 - t0);
        }
      }
    } finally {
      producerTransactionsChannel.unsubscribe(timing);
    }
    const retriesAt50 = [...retried].map(([why, count]) => `${count} × ${why}`).join('; ');
    // The same back to back with 5 ms between retries.
    const eager = producer(`kvs2-test-${randomUUID()}`, { retryDelayMs: 5 });
    const eagerTotals: number[] = [];
    for (let i = 0; i < 120; i++) {
      const t0 = performance.now();
      const transaction = await beginFencing(eager);
      committed.push(await produceOne(transaction, topic, 0, `eager-${i}`, 'v'));
      await transaction.commit();
      if (i >= 20) eagerTotals.push(performance.now() - t0);
    }
    const plain: number[] = [];
    for (let i = 0; i < 220; i++) {
      const t0 = performance.now();
      await appendPlain(log, `plain-${i}`, 'v');
      if (i >= 20) plain.push(performance.now() - t0);
    }

    // Design d's whole cycle: produce, wait until the reader has everything below o, commit, see the record.
    const follower = follow(log);
    const retriedBefore = [...retried.values()].reduce((sum, n) => sum + n, 0);
    const verdicts: number[] = [];
    const visible: number[] = [];
    for (let i = 0; i < 70; i++) {
      const t0 = performance.now();
      const transaction = await beginFencing(writer);
      const offset = await produceOne(transaction, topic, 0, `cas-${i}`, 'v');
      await follower.waitFor(() => follower.position(0) >= offset, WAIT_MS, 'the reader at o');
      await transaction.commit();
      const t1 = performance.now();
      await follower.waitFor(() => follower.records.at(-1)?.offset === offset, WAIT_MS, 'the committed record');
      const t2 = performance.now();
      if (i >= 10) {
        verdicts.push(t1 - t0);
        visible.push(t2 - t0);
      }
    }

    const cycleRetries = [...retried.values()].reduce((sum, n) => sum + n, 0) - retriedBefore;

    // One open transaction per producer (and per transactional id at the coordinator).
    const open = await beginFencing(writer);
    await assert.rejects(writer.beginTransaction(), /There is already an active transaction/);
    await assert.rejects(
      writer.send({ messages: [{ topic, partition: 0, key: Buffer.from('x'), value: Buffer.from('x') }] }),
      /in use by a transaction/,
    );
    // Nothing was produced in it, so the coordinator knows of no transaction: EndTxn would be refused.
    let emptyAbort = 'accepted';
    await open.abort().catch((error: unknown) => {
      emptyAbort = describeKafkaError(error);
    });
    await open.cancel().catch(() => {});

    // A pool of transactional ids: transactions of several ids open at once on one partition, each decided alone.
    const pool = Array.from({ length: 4 }, () => producer(`kvs2-test-pool-${randomUUID()}`));
    const cycle = performance.now();
    const opened: Array<{ tx: OpenTransaction; offset: number; commit: boolean }> = [];
    for (const [i, member] of pool.entries()) {
      const tx = await beginFencing(member);
      opened.push({ tx, offset: await produceOne(tx, topic, 0, `pool-${i}`, 'v'), commit: i % 2 === 0 });
    }
    await Promise.all(opened.map(({ tx, commit }) => (commit ? tx.commit() : tx.abort())));
    const poolMs = performance.now() - cycle;

    const lastPool = opened.at(-1)?.offset ?? Number.NaN;
    await follower.waitFor(() => follower.position(0) > lastPool, WAIT_MS, 'the reader past the pool transactions');
    const delivered = follower.records.map((r) => r.offset);
    assert.deepEqual(
      delivered.filter((offset) => committed.includes(offset)),
      committed,
      'every committed record delivered once, in order',
    );
    assert.deepEqual(
      follower.records.filter((r) => r.key?.toString().startsWith('pool-')).map((r) => r.key?.toString()),
      ['pool-0', 'pool-2'],
    );
    t.diagnostic(`AddPartitionsToTxn: ${summarize(addPartitions.slice(-200))}`);
    t.diagnostic(`send in a transaction (AddPartitionsToTxn + Produce): ${summarize(sends)}`);
    t.diagnostic(`commit (EndTxn): ${summarize(commits)}`);
    t.diagnostic(`begin + send + commit: ${summarize(totals)}`);
    t.diagnostic(`retries of those (50 ms apart): ${retriesAt50 || 'none'}`);
    t.diagnostic(`begin + send + commit back to back, 5 ms between retries: ${summarize(eagerTotals)}`);
    t.diagnostic(`plain KafkaLog.append for comparison: ${summarize(plain)}`);
    t.diagnostic(`CAS cycle to the verdict (begin, send, reader at o, commit): ${summarize(verdicts)}`);
    t.diagnostic(`CAS cycle until this node's reader has the record: ${summarize(visible)}`);
    t.diagnostic(`requests retried in those 70 cycles: ${cycleRetries}`);
    t.diagnostic(`abort() of a transaction that produced nothing: ${emptyAbort}`);
    t.diagnostic(`4 transactional ids, open at once on one partition, then decided: ${poolMs.toFixed(1)} ms`);
  });
});
