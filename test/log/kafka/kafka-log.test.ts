import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Admin, ConfigResourceTypes, Producer } from '@platformatic/kafka';
import { isKvs2Error, Kvs2Error } from '../../../src/errors.js';
import { KafkaLog } from '../../../src/log/kafka/kafka-log.js';
import type { KafkaLogLogger, KafkaLogOptions } from '../../../src/log/kafka/kafka-log-options.js';
import { murmur2, partitionForKey } from '../../../src/log/kafka/murmur2-partitioner.js';
import type { LogBatch, LogPosition, LogRecord } from '../../../src/log/log.js';
import type { Offsets } from '../../../src/offsets.js';
import { kafkaBrokers, needsKafka } from '../../support/kafka-env.js';

const PARTITIONS = 3;
const run = promisify(execFile);

function uniqueTopic(): string {
  return `kvs2-test-${randomUUID().slice(0, 8)}`;
}

/** Reads from `from` until `done` says so; fails after `timeoutMs`. */
async function readUntil(
  log: KafkaLog,
  from: Offsets,
  done: (records: LogRecord[]) => boolean,
  timeoutMs = 15_000,
): Promise<{ records: LogRecord[]; batches: LogBatch[] }> {
  const records: LogRecord[] = [];
  const batches: LogBatch[] = [];
  const stop = AbortSignal.timeout(timeoutMs);
  for await (const batch of log.read(from, stop)) {
    batches.push(batch);
    records.push(...batch.records);
    if (done(records)) return { records, batches };
  }
  throw new Error(`read ended after ${records.length} records without finding what it waited for`);
}

/** A logger spy: our own object standing in for pino, recording what was logged. */
function recordingLogger(): KafkaLogLogger & { warnings: string[] } {
  const warnings: string[] = [];
  const logger = {
    warnings,
    info: (_obj: unknown, _msg?: string) => {},
    warn: (_obj: unknown, msg?: string) => {
      warnings.push(msg ?? '');
    },
    error: (_obj: unknown, _msg?: string) => {},
  };
  return logger as KafkaLogLogger & { warnings: string[] };
}

describe('KafkaLog against real brokers', needsKafka(), () => {
  let brokers: string[];
  let admin: Admin;
  const topics: string[] = [];
  const logs: KafkaLog[] = [];

  /** A log on a fresh topic of this test's own (deleted afterwards). */
  function newLog(options: Partial<KafkaLogOptions> = {}): KafkaLog {
    const topic = options.topic ?? uniqueTopic();
    topics.push(topic);
    const log = new KafkaLog({ brokers, topic, partitions: PARTITIONS, clientId: 'kvs2-test', ...options });
    logs.push(log);
    return log;
  }

  before(() => {
    brokers = kafkaBrokers();
    admin = new Admin({ clientId: 'kvs2-test-admin', bootstrapBrokers: brokers });
  });

  after(async () => {
    await Promise.allSettled(logs.map((log) => log.close()));
    const created = [...new Set(topics)];
    if (created.length > 0) await admin.deleteTopics({ topics: created }).catch(() => {});
    await admin.close();
  });

  async function topicConfig(topic: string): Promise<Map<string, string | null | undefined>> {
    const [description] = await admin.describeConfigs({
      resources: [{ resourceType: ConfigResourceTypes.TOPIC, resourceName: topic }],
    });
    return new Map((description?.configs ?? []).map((config) => [config.name, config.value]));
  }

  test('open creates a compacted topic sized for the largest record, and the identity is stable', async () => {
    const log = newLog({ maxValueBytes: 2 * 1024 * 1024 });
    const identity = await log.open();
    assert.match(identity, /^kafka:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.equal(log.retainsHistory, true);
    assert.match(log.description, /^Kafka topic kvs2-test-\w+ at 127\.0\.0\.1:\d+/);

    const topic = topics.at(-1) ?? '';
    const metadata = await admin.metadata({ topics: [topic] });
    const expectedReplicas = Math.min(3, metadata.brokers.size);
    const layout = metadata.topics.get(topic);
    assert.equal(layout?.partitionsCount, PARTITIONS);
    assert.ok(layout?.partitions.every((partition) => partition.replicas.length === expectedReplicas));
    assert.equal(`kafka:${layout?.id}`, identity);

    const config = await topicConfig(topic);
    assert.equal(config.get('cleanup.policy'), 'compact');
    assert.equal(config.get('min.insync.replicas'), String(Math.min(2, expectedReplicas)));
    assert.ok(Number(config.get('max.message.bytes')) >= 2 * 1024 * 1024 + 1978, 'max.message.bytes fits a record');
    assert.equal(log.tombstoneRetentionMs, Number(config.get('delete.retention.ms')));
    assert.equal(log.tombstoneRetentionMs, 86_400_000, "the broker's default delete.retention.ms");

    const again = newLog({ topic });
    assert.equal(await again.open(), identity);
    assert.equal(await again.currentIdentity(), identity);
  });

  test('an existing topic that is not compacted opens with a loud warning', async () => {
    const topic = uniqueTopic();
    topics.push(topic);
    const [created] = await admin.createTopics({
      topics: [topic],
      partitions: 2,
      replicas: 1,
      configs: [{ name: 'cleanup.policy', value: 'delete' }],
    });
    const logger = recordingLogger();
    const log = newLog({ topic, logger });
    assert.equal(await log.open(), `kafka:${created?.id}`);
    assert.ok(
      logger.warnings.some((message) => message.includes('cleanup.policy=delete')),
      `warnings: ${JSON.stringify(logger.warnings)}`,
    );
  });

  test('500 concurrent appends share produce requests and read back in order, in the partitions murmur2 picks', async () => {
    const log = newLog();
    await log.open();
    let produceRequests = 0;
    const countProduce = (message: unknown): void => {
      if ((message as { apiKey?: number }).apiKey === 0) produceRequests++;
    };
    subscribe('tracing:plt:kafka:connections:api:start', countProduce);
    const keys = Array.from({ length: 500 }, (_, i) => Buffer.from(`key-${i}`));
    let positions: Awaited<ReturnType<KafkaLog['append']>>[];
    try {
      positions = await Promise.all(
        keys.map((key, i) => log.append(key, Buffer.from(`value-${i}`), AbortSignal.timeout(15_000))),
      );
    } finally {
      unsubscribe('tracing:plt:kafka:connections:api:start', countProduce);
    }
    assert.equal(new Set(positions.map((p) => `${p.partition}:${p.offset}`)).size, 500, 'distinct positions');
    positions.forEach((position, i) => {
      assert.equal(position.partition, partitionForKey(keys[i] ?? Buffer.alloc(0), PARTITIONS));
    });
    assert.ok(log.produceRequests <= 25, `${log.produceRequests} sends for 500 appends`);
    assert.ok(produceRequests <= 25, `${produceRequests} Produce requests on the wire for 500 appends`);

    const { records } = await readUntil(log, new Map(), (r) => r.length >= 500);
    assert.equal(records.length, 500);
    const lastOffset = new Map<number, number>();
    for (const record of records) {
      assert.ok((lastOffset.get(record.partition) ?? -1) < record.offset, 'offsets ascend within a partition');
      lastOffset.set(record.partition, record.offset);
      const index = Number(record.key?.toString().slice('key-'.length));
      assert.deepEqual(positions[index], { partition: record.partition, offset: record.offset });
      assert.equal(record.value?.toString(), `value-${index}`);
    }
    const end = await log.endOffsets(AbortSignal.timeout(15_000));
    const start = await log.startOffsets();
    assert.deepEqual([...start.keys()].sort(), [0, 1, 2]);
    for (const [partition, offset] of end) {
      assert.equal(start.get(partition), 0);
      assert.equal(offset, (lastOffset.get(partition) ?? -1) + 1, `end offset of partition ${partition}`);
    }
  });

  test('read resumes exactly at the given offsets; tombstones and empty values stay apart', async () => {
    const log = newLog();
    await log.open();
    const key = Buffer.from('resume-key');
    const partition = partitionForKey(key, PARTITIONS);
    const first = await log.append(key, Buffer.from('v0'), AbortSignal.timeout(15_000));
    await log.append(key, Buffer.from('v1'), AbortSignal.timeout(15_000));
    const resumeAt = await log.append(key, Buffer.from('v2'), AbortSignal.timeout(15_000));
    const tombstone = await log.append(key, null, AbortSignal.timeout(15_000));
    const emptyKey = Buffer.from('empty-value-key');
    const empty = await log.append(emptyKey, Buffer.alloc(0), AbortSignal.timeout(15_000));

    const from = new Map([[partition, resumeAt.offset]]);
    const { records, batches } = await readUntil(log, from, (r) =>
      [tombstone, empty].every((p) =>
        r.some((record) => record.partition === p.partition && record.offset === p.offset),
      ),
    );
    const mine = records.filter((record) => record.partition === partition);
    assert.ok(first.offset < resumeAt.offset);
    assert.equal(mine[0]?.offset, resumeAt.offset, 'the first record is the one asked for');
    assert.ok(
      mine.every((record) => record.offset >= resumeAt.offset),
      'nothing before it',
    );
    const byOffset = new Map(records.map((record) => [`${record.partition}:${record.offset}`, record]));
    assert.equal(byOffset.get(`${partition}:${resumeAt.offset}`)?.value?.toString(), 'v2');
    assert.equal(byOffset.get(`${partition}:${tombstone.offset}`)?.value, null, 'a tombstone has a null value');
    const emptyRecord = byOffset.get(`${empty.partition}:${empty.offset}`);
    assert.ok(Buffer.isBuffer(emptyRecord?.value) && emptyRecord.value.length === 0, 'an empty value stays empty');
    assert.equal(emptyRecord?.key?.toString(), 'empty-value-key');
    // Partitions missing from `from` start at their start offset.
    if (empty.partition !== partition) assert.equal(emptyRecord?.offset, 0);
    const lastBatchOffsets = new Map<number, number>();
    for (const batch of batches) for (const [p, next] of batch.nextOffsets) lastBatchOffsets.set(p, next);
    assert.equal(lastBatchOffsets.get(partition), tombstone.offset + 1);
    assert.deepEqual(
      lastBatchOffsets,
      new Map([...(await log.endOffsets(AbortSignal.timeout(15_000)))].filter(([p]) => lastBatchOffsets.has(p))),
      'nextOffsets reach the end offsets',
    );
  });

  test('records without a key, which only a non-compacted topic takes, are read with key null', async () => {
    const topic = uniqueTopic();
    topics.push(topic);
    await admin.createTopics({
      topics: [topic],
      partitions: PARTITIONS,
      replicas: 1,
      configs: [{ name: 'cleanup.policy', value: 'delete' }],
    });
    const log = newLog({ topic, logger: recordingLogger() });
    await log.open();
    const plain = new Producer({ clientId: 'kvs2-test-plain', bootstrapBrokers: brokers });
    let keylessOffset: number;
    try {
      const produced = await plain.send({ messages: [{ topic, partition: 1, value: Buffer.from('keyless') }] });
      keylessOffset = Number(produced.offsets?.[0]?.offset);
    } finally {
      await plain.close();
    }
    const { records } = await readUntil(log, new Map(), (r) => r.length >= 1);
    assert.deepEqual(
      records.map((r) => [r.partition, r.offset, r.key, r.value?.toString()]),
      [[1, keylessOffset, null, 'keyless']],
    );
  });

  // How long a lone record takes and how few fetches a flow needs are figures, reported here as diagnostics
  // (a test asserts no timing); the benchmark's replication-lag scenarios are where they are measured.
  test('an idle reader long-polling and a reader of a flow of records both get every record', async (t) => {
    const writer = newLog();
    await writer.open();
    const topic = topics.at(-1) ?? '';
    const reader = newLog({ topic, fetchFlowingWaitMs: 100, fetchMaxWaitMs: 5_000 });
    await reader.open();
    let fetches = 0;
    const countFetches = (message: unknown): void => {
      if ((message as { apiKey?: number }).apiKey === 1) fetches++;
    };
    const stop = new AbortController();
    const received: LogRecord[] = [];
    let onRecord = (): void => {};
    const reading = (async () => {
      for await (const batch of reader.read(new Map(), stop.signal)) {
        received.push(...batch.records);
        onRecord();
      }
    })().catch(() => {});
    const receivedCount = (count: number): Promise<void> =>
      new Promise((resolve) => {
        onRecord = () => {
          if (received.length >= count) resolve();
        };
        onRecord();
      });
    try {
      // Idle: the reader long-polls (5 s here), yet a lone record arrives well before that.
      await sleep(300);
      const started = Date.now();
      await writer.append(Buffer.from('lone'), Buffer.from('v'), AbortSignal.timeout(15_000));
      await receivedCount(1);
      t.diagnostic(`a lone record arrived after ${Date.now() - started} ms (the reader long-polls for 5 s)`);
      // Flowing: 200 records written one after the other come in a few fetches, not one fetch each.
      await sleep(300); // back to idle: the flowing wait (100 ms) has passed
      subscribe('tracing:plt:kafka:connections:api:start', countFetches);
      for (let i = 0; i < 200; i++)
        await writer.append(Buffer.from(`flow-${i}`), Buffer.from('v'), AbortSignal.timeout(15_000));
      await receivedCount(201);
    } finally {
      unsubscribe('tracing:plt:kafka:connections:api:start', countFetches);
      stop.abort();
      await reading;
    }
    assert.equal(received.length, 201);
    t.diagnostic(`${fetches} fetches for 200 records written one at a time`);
  });

  test("records from other producers are read; Java's partitioner and kvs2 agree on every key", async (t) => {
    const log = newLog();
    await log.open();
    const topic = topics.at(-1) ?? '';
    const keys = Array.from({ length: 40 }, (_, i) => `foreign-${i}`);

    // The library's default partitioner maps negative hashes with `>>> 0`, not Java's sign-bit mask:
    // the two agree exactly on keys whose murmur2 is non-negative.
    const plain = new Producer({ clientId: 'kvs2-test-plain', bootstrapBrokers: brokers });
    try {
      await plain.send({ messages: keys.map((key) => ({ topic, key: Buffer.from(key), value: Buffer.from('lib') })) });
    } finally {
      await plain.close();
    }

    const viaKcat = await kcatAvailable();
    if (viaKcat) {
      // librdkafka's murmur2_random is Java's partitioner; kcat reads "key\tvalue" lines with -K.
      const input = keys.map((key) => `${key}\tkcat`).join('\n');
      const kcat = execFile('kcat', [
        '-P',
        '-b',
        brokers.join(','),
        '-t',
        topic,
        '-K',
        '\t',
        '-X',
        'partitioner=murmur2_random',
      ]);
      kcat.stdin?.end(`${input}\n`);
      await new Promise<void>((resolve, reject) => {
        kcat.on('error', reject);
        kcat.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`kcat exited with ${code}`))));
      });
    }

    // The plain producer is not idempotent, and the library resends a whole request when one of its
    // partitions answers NOT_LEADER_OR_FOLLOWER (as happens right after a topic is created): the topic
    // may hold some of its records twice. kvs2 must read whatever the topic holds.
    const end = await log.endOffsets(AbortSignal.timeout(15_000));
    const held = [...end.values()].reduce((sum, offset) => sum + offset, 0);
    const { records } = await readUntil(log, new Map(), (r) => r.length >= held);
    assert.equal(records.length, held);
    const delivered = new Set(records.map((r) => `${r.key?.toString()}/${r.value?.toString()}`));
    for (const key of keys) {
      assert.ok(delivered.has(`${key}/lib`), `${key} from the library producer`);
      if (viaKcat) assert.ok(delivered.has(`${key}/kcat`), `${key} from kcat`);
    }
    assert.equal(held >= keys.length * (viaKcat ? 2 : 1), true);
    for (const record of records) {
      const key = record.key ?? Buffer.alloc(0);
      const producer = record.value?.toString();
      if (producer === 'kcat' || murmur2(key) >= 0) {
        assert.equal(record.partition, partitionForKey(key, PARTITIONS), `${producer} put ${key} elsewhere`);
      }
    }
    if (held > keys.length * (viaKcat ? 2 : 1)) {
      t.diagnostic(`the topic holds ${held} records for ${keys.length * (viaKcat ? 2 : 1)} sent: library resends`);
    }
    if (!viaKcat) t.diagnostic('kcat is not installed: Java partitioning is proven by the murmur2 vectors only');
  });

  test('values of the largest accepted size, appended at once to one partition, all land', async () => {
    const log = newLog();
    await log.open();
    const key = Buffer.from('big');
    // Each alone fits max.message.bytes; together they would not: the batcher must split them.
    const values = [1, 2, 3, 4].map((n) => Buffer.alloc(1024 * 1024, n));
    const positions = await Promise.all(values.map((value) => log.append(key, value, AbortSignal.timeout(15_000))));
    assert.deepEqual(
      positions.map((p) => p.offset),
      [0, 1, 2, 3],
    );
    const { records } = await readUntil(log, new Map(), (r) => r.length >= 4);
    assert.deepEqual(
      records.map((r) => [r.offset, r.value?.length, r.value?.[0]]),
      values.map((value, i) => [i, value.length, i + 1]),
    );
  });

  test('an append retries while its topic is gone until its caller gives up, and is never sent after that', async () => {
    const log = newLog({ partitions: 1 });
    await log.open();
    const topic = topics.at(-1) ?? '';
    const key = Buffer.from('retried');
    await log.append(key, Buffer.from('before'), AbortSignal.timeout(15_000));
    await admin.deleteTopics({ topics: [topic] });
    await until(async () => !(await topicExists(admin, topic)), 'the topic to be deleted');

    // Every attempt is refused (UNKNOWN_TOPIC_OR_PARTITION, which clients retry) until the topic is back.
    const caller = new AbortController();
    const sendsBefore = log.produceRequests;
    const refused = log.append(key, Buffer.from('given-up'), caller.signal);
    await until(async () => log.produceRequests >= sendsBefore + 2, 'a second attempt of the refused append');
    caller.abort(new Kvs2Error('DEADLINE_EXCEEDED', 'deadline exceeded'));
    await assert.rejects(refused, (error: unknown) => isKvs2Error(error) && error.code === 'DEADLINE_EXCEEDED');

    await createUntilDeleted(admin, topic);
    // Appends to a partition land in order: once this one is acknowledged, a late resend of the one
    // given up on would be in the topic before it.
    const written = await eventuallyAppended(log, key, Buffer.from('written'));
    const reader = newLog({ topic });
    await reader.open();
    const { records } = await readUntil(reader, new Map(), (r) =>
      r.some((record) => record.partition === written.partition && record.offset === written.offset),
    );
    assert.deepEqual(
      records.map((r) => r.value?.toString()),
      records.map(() => 'written'),
      'the append given up on was never written',
    );
  });

  test('aborted transactions never show; partitions holding only markers and aborted records still advance', async () => {
    const log = newLog();
    await log.open();
    const topic = topics.at(-1) ?? '';
    const producer = new Producer({
      clientId: 'kvs2-test-transactions',
      bootstrapBrokers: brokers,
      idempotent: true,
      transactionalId: `kvs2-test-${randomUUID()}`,
    });
    const messages = (prefix: string, partition: number, count: number) =>
      Array.from({ length: count }, (_, i) => ({
        topic,
        partition,
        key: Buffer.from(`${prefix}-${i}`),
        value: Buffer.from(prefix),
      }));
    try {
      const aborted = await producer.beginTransaction();
      await aborted.send({ messages: messages('aborted', 0, 5) });
      await aborted.abort();
      const committed = await producer.beginTransaction();
      await committed.send({ messages: messages('committed', 1, 3) });
      await committed.commit();
      const abortedAgain = await producer.beginTransaction();
      await abortedAgain.send({ messages: messages('aborted-again', 1, 2) });
      await abortedAgain.abort();
    } finally {
      await producer.close();
    }
    // Abort markers are written after abort() returns; until then the partition's end (its last stable
    // offset) stays at the aborted transaction's first record.
    let end = await log.endOffsets(AbortSignal.timeout(15_000));
    for (const deadline = Date.now() + 10_000; end.get(1) !== 7 && Date.now() < deadline; ) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      end = await log.endOffsets(AbortSignal.timeout(15_000));
    }
    assert.equal(end.get(0), 6, '5 aborted records and the abort marker');
    assert.equal(end.get(1), 7, '3 committed, the commit marker, 2 aborted, the abort marker');

    const reached = new Map<number, number>();
    const seen: LogRecord[] = [];
    const stop = AbortSignal.timeout(15_000);
    for await (const batch of log.read(new Map(), stop)) {
      seen.push(...batch.records);
      for (const [partition, next] of batch.nextOffsets) reached.set(partition, next);
      if (reachedEnd(reached, end)) break;
    }
    assert.deepEqual(
      seen.map((r) => [r.partition, r.offset, r.key?.toString()]),
      [
        [1, 0, 'committed-0'],
        [1, 1, 'committed-1'],
        [1, 2, 'committed-2'],
      ],
    );
    assert.equal(reached.get(0), 6, 'partition 0 moved past its aborted records and marker');
    assert.equal(reached.get(1), 7);
  });

  test('reading records retention removed, or past the end of the log, fails with LOG_POSITION_LOST', async () => {
    // DeleteRecords (retention's effect, on demand) is refused on compacted topics: use a deleting one.
    const topic = uniqueTopic();
    topics.push(topic);
    await admin.createTopics({
      topics: [topic],
      partitions: 1,
      replicas: 1,
      configs: [{ name: 'cleanup.policy', value: 'delete' }],
    });
    const log = newLog({ topic, logger: recordingLogger() });
    await log.open();
    for (let i = 0; i < 5; i++)
      await log.append(Buffer.from(`k${i}`), Buffer.from(`v${i}`), AbortSignal.timeout(15_000));
    await admin.deleteRecords({ topics: [{ name: topic, partitions: [{ partition: 0, offset: 3n }] }] });
    assert.deepEqual(await log.startOffsets(), new Map([[0, 3]]));

    const lost = async (from: Offsets): Promise<void> => {
      const reading = readUntil(log, from, () => false, 10_000);
      await assert.rejects(reading, (error: unknown) => isKvs2Error(error) && error.code === 'LOG_POSITION_LOST');
    };
    await lost(new Map([[0, 1]]));
    await lost(new Map([[0, 1000]]));
    const { records } = await readUntil(log, new Map([[0, 3]]), (r) => r.length >= 2);
    assert.deepEqual(
      records.map((r) => r.offset),
      [3, 4],
    );
  });

  test('partitions added to the topic are picked up by a running read', async () => {
    const log = newLog({ metadataRefreshMs: 500 });
    await log.open();
    const topic = topics.at(-1) ?? '';
    const stop = AbortSignal.timeout(15_000);
    const seen: LogRecord[] = [];
    const reading = (async () => {
      for await (const batch of log.read(new Map(), stop)) {
        seen.push(...batch.records);
        if (seen.some((r) => r.partition === PARTITIONS)) return;
      }
    })();
    await admin.createPartitions({ topics: [{ name: topic, count: PARTITIONS + 1 }] });
    const plain = new Producer({ clientId: 'kvs2-test-plain', bootstrapBrokers: brokers });
    try {
      // The library takes an explicit partition modulo the partition count it knows: until its metadata
      // shows the new partition, partition 3 would silently become partition 0.
      for (let attempt = 0; ; attempt++) {
        const metadata = await plain.metadata({ topics: [topic], forceUpdate: true });
        if (metadata.topics.get(topic)?.partitionsCount === PARTITIONS + 1) break;
        if (attempt === 100) throw new Error('the new partition never showed up in the metadata');
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await plain.send({
        messages: [{ topic, partition: PARTITIONS, key: Buffer.from('new'), value: Buffer.from('p') }],
      });
    } finally {
      await plain.close();
    }
    await reading;
    assert.deepEqual(
      seen.map((r) => [r.partition, r.offset, r.key?.toString()]),
      [[PARTITIONS, 0, 'new']],
    );
  });

  test('close lets pending appends finish, ends reads, refuses new appends, and can be called twice', async () => {
    const log = newLog();
    await log.open();
    const reading = (async () => {
      let records = 0;
      for await (const batch of log.read(new Map(), AbortSignal.timeout(20_000))) records += batch.records.length;
      return records;
    })();
    const pending = Array.from({ length: 50 }, (_, i) =>
      log.append(Buffer.from(`c${i}`), Buffer.from('v'), AbortSignal.timeout(15_000)),
    );
    const closing = log.close();
    const positions = await Promise.all(pending);
    assert.equal(new Set(positions.map((p) => `${p.partition}:${p.offset}`)).size, 50);
    await closing;
    await log.close();
    assert.ok((await reading) <= 50, 'the read ended when the log closed');
    await assert.rejects(
      log.append(Buffer.from('late'), Buffer.from('v'), AbortSignal.timeout(15_000)),
      (error: unknown) => isKvs2Error(error) && error.code === 'SHUTTING_DOWN',
    );
  });

  test('a topic deleted and recreated under a reader ends the read with LOG_RECREATED', async () => {
    const log = newLog();
    const identity = await log.open();
    const topic = topics.at(-1) ?? '';
    const marker = await log.append(Buffer.from('before'), Buffer.from('x'), AbortSignal.timeout(15_000));
    const stop = new AbortController();
    let sawMarker: () => void = () => {};
    const markerSeen = new Promise<void>((resolve) => {
      sawMarker = resolve;
    });
    const reading = (async () => {
      for await (const batch of log.read(new Map(), stop.signal)) {
        if (batch.records.some((r) => r.partition === marker.partition && r.offset === marker.offset)) sawMarker();
      }
    })();
    reading.catch(() => {});
    await markerSeen;

    await admin.deleteTopics({ topics: [topic] });
    const created = await createUntilDeleted(admin, topic);
    await assert.rejects(reading, (error: unknown) => isKvs2Error(error) && error.code === 'LOG_RECREATED');
    stop.abort();

    const current = await log.currentIdentity();
    assert.equal(current, `kafka:${created}`);
    assert.notEqual(current, identity);
    await assert.rejects(
      log.endOffsets(AbortSignal.timeout(15_000)),
      (error: unknown) => isKvs2Error(error) && error.code === 'LOG_RECREATED',
    );

    // reopen() adopts the new topic: offsets, appends and reads are its own from then on.
    assert.equal(await log.reopen(), current);
    const fresh = await log.append(Buffer.from('after'), Buffer.from('y'), AbortSignal.timeout(15_000));
    assert.equal(fresh.offset, 0);
    assert.equal((await log.endOffsets(AbortSignal.timeout(15_000))).get(fresh.partition), 1);
    const { records } = await readUntil(log, new Map(), (r) => r.length >= 1);
    assert.deepEqual(
      records.map((r) => r.key?.toString()),
      ['after'],
    );
  });
});

/** Polls `condition` until it holds; fails after 20 s, naming what it waited for. */
async function until(condition: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function topicExists(admin: Admin, topic: string): Promise<boolean> {
  const listed = await admin.listTopics();
  return listed.includes(topic);
}

/**
 * Appends until Kafka takes the record: a topic setting just changed reaches the partition's leader a
 * moment later. Each attempt has a deadline of its own.
 */
async function eventuallyAppended(log: KafkaLog, key: Buffer, value: Buffer): Promise<LogPosition> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      return await log.append(key, value, AbortSignal.timeout(2_000));
    } catch (error) {
      if (Date.now() > deadline) throw error;
    }
  }
}

/** Whether every partition with records has been read up to its end offset. */
function reachedEnd(reached: ReadonlyMap<number, number>, end: Offsets): boolean {
  return [...end].every(([partition, offset]) => offset === 0 || (reached.get(partition) ?? 0) >= offset);
}

/** Creates the topic again once its deletion has gone through; returns the new topic id. */
async function createUntilDeleted(admin: Admin, topic: string): Promise<string> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      const [created] = await admin.createTopics({ topics: [topic], partitions: PARTITIONS, replicas: 1 });
      return created?.id ?? '';
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

async function kcatAvailable(): Promise<boolean> {
  try {
    await run('kcat', ['-V']);
    return true;
  } catch {
    return false;
  }
}
