import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { partitionForKey } from '../../src/log/kafka/murmur2-partitioner.js';
import { eventually, HealthClient, SeedClient } from '../support/grpc-clients.js';
import { kafkaBrokers, needsKafka } from '../support/kafka-env.js';
import { tempDir } from '../support/paths.js';
import { PlainKafka } from '../support/plain-kafka.js';
import { type LogLine, ServerProcess } from '../support/server-process.js';

const key = (prefix: string, i: number): Buffer => Buffer.from(`${prefix}-${i}`);
const sum = (offsets: unknown): number => Object.values(offsets as Record<string, number>).reduce((a, b) => a + b, 0);

/** Several kvs2 nodes replicating through one real Kafka topic. */
describe('kvs2 nodes on a shared Kafka topic', needsKafka(), () => {
  let brokers: string;
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let plain: PlainKafka;
  const running: ServerProcess[] = [];

  const startNode = async (name: string, topic: string, extra: string[] = []): Promise<ServerProcess> => {
    const node = await ServerProcess.start({
      dataDir: `${dir.path}/${name}`,
      args: ['--kafka-brokers', brokers, '--topic', topic, '--partitions', '3', ...extra],
    });
    running.push(node);
    return node;
  };
  const readable = async (client: SeedClient, keys: Buffer[], expected: (i: number) => Buffer | null) => {
    const reply = await client.multiGet(keys);
    return reply.parts.every((part, i) => {
      const want = expected(i);
      return want === null ? part.status === 'NOT_FOUND' : part.status === 'OK' && part.data.equals(want);
    });
  };

  before(async () => {
    brokers = kafkaBrokers().join(',');
    dir = await tempDir('kafka-nodes');
    plain = new PlainKafka(brokers);
  });
  after(async () => {
    await Promise.all(running.map((node) => node.stop()));
    await plain.close();
    await dir.remove();
  });

  test('three nodes: writes on any node are readable on all of them', async () => {
    const topic = `kvs2-test-${randomUUID()}`;
    const nodes = [
      await startNode('three-a', topic),
      await startNode('three-b', topic),
      await startNode('three-c', topic),
    ];
    const clients = nodes.map((node) => new SeedClient(node.address));
    const keys = Array.from({ length: 300 }, (_, i) => key('three', i));
    await Promise.all(keys.map((k, i) => clients[i % 3]?.set(k, Buffer.from(`v${i}`))));
    for (const client of clients) {
      await eventually(() => readable(client, keys, (i) => Buffer.from(`v${i}`)), 20_000, 'all writes on every node');
    }
    for (const client of clients) client.close();
    await Promise.all(nodes.map((node) => node.stop()));
  });

  test('records from a plain Kafka producer are served and deletes (tombstones) propagate', async () => {
    const topic = `kvs2-test-${randomUUID()}`;
    const a = await startNode('plain-a', topic);
    const b = await startNode('plain-b', topic);
    const [ca, cb] = [new SeedClient(a.address), new SeedClient(b.address)];
    await ca.set(Buffer.from('doomed'), Buffer.from('soon gone'));
    await eventually(
      () => readable(cb, [Buffer.from('doomed')], () => Buffer.from('soon gone')),
      20_000,
      'doomed on B',
    );

    const keys = Array.from({ length: 50 }, (_, i) => key('plain', i));
    await plain.produce(topic, [
      ...keys.map((k, i) => ({ key: k, value: Buffer.from(`plain-${i}`) })),
      { key: Buffer.from('doomed'), value: null },
      { key: Buffer.from('empty-value'), value: Buffer.alloc(0) },
    ]);
    for (const client of [ca, cb]) {
      await eventually(() => readable(client, keys, (i) => Buffer.from(`plain-${i}`)), 20_000, 'plain records');
      await eventually(() => readable(client, [Buffer.from('doomed')], () => null), 20_000, 'the delete');
      assert.deepEqual(await client.get(Buffer.from('empty-value')), { status: 'OK', data: Buffer.alloc(0) });
    }
    ca.close();
    cb.close();
    await Promise.all([a.stop(), b.stop()]);
  });

  test('a topic that is not compacted gets a loud warning, and records without a key are skipped', async () => {
    // Kafka refuses keyless records on compacted topics, so only a topic made by someone else has them.
    const topic = `kvs2-test-${randomUUID()}`;
    await plain.createTopic(topic, 2, { 'cleanup.policy': 'delete' });
    await plain.produce(topic, [
      { key: null, value: Buffer.from('no key') },
      { key: Buffer.from('keyed'), value: Buffer.from('kept') },
    ]);
    const node = await startNode('not-compacted', topic);
    const warning = await node.waitForLine((line) => line.level === 'warn' && /compact/.test(line.msg));
    assert.match(warning.msg, /cleanup\.policy|compact/);
    const skipped = await node.waitForLine((line) => line.msg.includes('skipped a log record'));
    assert.match(skipped.msg, /no key/);
    await node.waitUntilCaughtUp();
    const client = new SeedClient(node.address);
    assert.deepEqual(await client.get(Buffer.from('keyed')), { status: 'OK', data: Buffer.from('kept') });
    client.close();
    await node.stop();
  });

  test('a record in a partition its key does not belong to is applied, with a warning naming both partitions', async () => {
    const topic = `kvs2-test-${randomUUID()}`;
    const node = await startNode('misplaced', topic);
    await node.waitUntilCaughtUp();
    const stray = Buffer.from('stray-key');
    const home = partitionForKey(stray, 3);
    const elsewhere = (home + 1) % 3;
    const client = new SeedClient(node.address);
    const valueIs = async (value: string) => (await client.get(stray)).data?.toString() === value;
    // A producer that partitions otherwise: the key in its own partition, applied, then in another one.
    await plain.produce(topic, [{ key: stray, value: Buffer.from('at home') }]);
    await eventually(() => valueIs('at home'), 20_000, 'the record in its own partition applied');
    await plain.produce(topic, [{ key: stray, value: Buffer.from('elsewhere'), partition: elsewhere }]);
    const warning = await node.waitForLine((line) => line.level === 'warn' && /belongs to partition/.test(line.msg));
    assert.match(warning.msg, new RegExp(`in partition ${elsewhere}, but its key belongs to partition ${home}`));
    // Applied all the same: the log is the truth, and this node read it in this order.
    await eventually(() => valueIs('elsewhere'), 20_000, 'the misplaced record applied');
    client.close();
    await node.stop();
  });

  test('a node killed with kill -9 under writes catches up from its stored offsets, not from zero', async () => {
    const topic = `kvs2-test-${randomUUID()}`;
    const a = await startNode('kill-a', topic);
    let b = await startNode('kill-b', topic);
    const ca = new SeedClient(a.address);
    const total = 3000;
    let written = 0;
    const writer = (async () => {
      for (let start = 0; start < total; start += 100) {
        await Promise.all(
          Array.from({ length: 100 }, (_, j) => ca.set(key('kill', start + j), Buffer.from(`v${start + j}`))),
        );
        written = start + 100;
      }
    })();
    await eventually(() => written >= 1000, 60_000, 'a third of the writes');
    const cbBefore = new SeedClient(b.address);
    await eventually(async () => (await cbBefore.get(key('kill', 500))).status === 'OK', 20_000, 'B applying');
    cbBefore.close();
    await b.kill9();
    await writer;

    b = await startNode('kill-b', topic);
    const start: LogLine = await b.waitForLine((line) => line.msg === 'replica starting');
    const resumedAt = sum(start.appliedOffsets);
    assert.ok(resumedAt >= 500, `B resumed at ${resumedAt} records, as if it replayed from zero`);
    const caughtUp = await b.waitUntilCaughtUp(60_000);
    assert.equal(caughtUp.appliedRecords, sum(start.endOffsets) - resumedAt, 'B applied only what it had missed');
    const cb = new SeedClient(b.address);
    const keys = Array.from({ length: total }, (_, i) => key('kill', i));
    for (let i = 0; i < total; i += 1000) {
      await eventually(
        () => readable(cb, keys.slice(i, i + 1000), (j) => Buffer.from(`v${i + j}`)),
        30_000,
        'every write on B',
      );
    }
    ca.close();
    cb.close();
    await Promise.all([a.stop(), b.stop()]);
  });

  test('a node started later bootstraps everything before it says SERVING', async () => {
    const topic = `kvs2-test-${randomUUID()}`;
    const a = await startNode('late-a', topic);
    const ca = new SeedClient(a.address);
    const keys = Array.from({ length: 2000 }, (_, i) => key('late', i));
    for (let i = 0; i < keys.length; i += 250) {
      await Promise.all(keys.slice(i, i + 250).map((k, j) => ca.set(k, Buffer.from(`v${i + j}`))));
    }
    const late = await startNode('late-b', topic);
    const start = await late.waitForLine((line) => line.msg === 'replica starting');
    assert.deepEqual(start.appliedOffsets, {});
    assert.equal(sum(start.endOffsets), keys.length);
    await late.waitUntilCaughtUp(60_000);
    const health = new HealthClient(late.address);
    assert.equal(await health.check('kvs2.Kvs2'), 'SERVING');
    health.close();
    // SERVING means caught up with what the topic held at start: every key is there, no waiting.
    const cl = new SeedClient(late.address);
    assert.ok(await readable(cl, keys, (i) => Buffer.from(`v${i}`)));
    ca.close();
    cl.close();
    await Promise.all([a.stop(), late.stop()]);
  });

  test('a recreated topic: a running node rebuilds and serves the new content, and so does a restarted one', async () => {
    const topic = `kvs2-test-${randomUUID()}`;
    const a = await startNode('recreate-a', topic);
    const b = await startNode('recreate-b', topic);
    const ca = new SeedClient(a.address);
    await ca.set(Buffer.from('old'), Buffer.from('old content'));
    const cbOld = new SeedClient(b.address);
    await eventually(async () => (await cbOld.get(Buffer.from('old'))).status === 'OK', 20_000, 'old on B');
    cbOld.close();
    await b.stop();

    await plain.deleteTopic(topic);
    await eventually(
      async () => {
        try {
          await plain.createTopic(topic, 3, { 'cleanup.policy': 'compact' });
          return true;
        } catch {
          return false; // deletion still in progress
        }
      },
      30_000,
      'the topic to be recreated',
    );
    await plain.produce(topic, [{ key: Buffer.from('new'), value: Buffer.from('new content') }]);

    await eventually(
      () =>
        readable(ca, [Buffer.from('old'), Buffer.from('new')], (i) => (i === 0 ? null : Buffer.from('new content'))),
      60_000,
      'A to rebuild',
    );
    const rebuilt = await a.waitForLine((line) => line.msg.startsWith('rebuilding the store'));
    assert.match(rebuilt.msg, /recreated|LOG_RECREATED|topic/i);

    const restarted = await startNode('recreate-b', topic);
    const atStart = await restarted.waitForLine((line) => line.msg.startsWith('rebuilding the store'));
    assert.match(atStart.msg, /deleted and recreated/);
    await restarted.waitUntilCaughtUp(30_000);
    const cb = new SeedClient(restarted.address);
    assert.ok(
      await readable(cb, [Buffer.from('old'), Buffer.from('new')], (i) =>
        i === 0 ? null : Buffer.from('new content'),
      ),
    );
    ca.close();
    cb.close();
    await Promise.all([a.stop(), restarted.stop()]);
  });

  test('a node away longer than delete.retention.ms rebuilds and no longer serves keys deleted meanwhile', async () => {
    const topic = `kvs2-test-${randomUUID()}`;
    // Compaction as eager as Kafka allows, and tombstones kept for 2 s only.
    await plain.createTopic(topic, 1, {
      'cleanup.policy': 'compact',
      'delete.retention.ms': '2000',
      'segment.ms': '100',
      'min.cleanable.dirty.ratio': '0.01',
      'min.compaction.lag.ms': '0',
    });
    let a = await startNode('away-a', topic);
    let ca = new SeedClient(a.address);
    await ca.set(Buffer.from('deleted-while-away'), Buffer.from('stale'));
    await ca.set(Buffer.from('kept'), Buffer.from('fresh'));
    await eventually(async () => (await ca.get(Buffer.from('kept'))).status === 'OK', 20_000, 'the writes on A');
    ca.close();
    await a.stop();

    await plain.produce(topic, [{ key: Buffer.from('deleted-while-away'), value: null }]);
    // Keep the log moving so that segments roll and the cleaner runs, until compaction has removed the
    // put and then the tombstone: from then on nothing in the topic says the key was deleted.
    let filler = 0;
    await eventually(
      async () => {
        await plain.produce(topic, [{ key: Buffer.from(`filler-${filler++ % 5}`), value: Buffer.from('x') }]);
        const records = await plain.readAll(topic);
        return !records.some((r) => r.key?.equals(Buffer.from('deleted-while-away')));
      },
      90_000,
      'compaction to remove the key and its tombstone',
    );

    a = await startNode('away-a', topic);
    const rebuild = await a.waitForLine((line) => line.msg.startsWith('rebuilding the store'));
    assert.match(rebuild.msg, /delete\.retention\.ms = 2000/);
    await a.waitUntilCaughtUp(30_000);
    ca = new SeedClient(a.address);
    assert.deepEqual(await ca.get(Buffer.from('deleted-while-away')), { status: 'NOT_FOUND', data: Buffer.alloc(0) });
    assert.deepEqual(await ca.get(Buffer.from('kept')), { status: 'OK', data: Buffer.from('fresh') });
    ca.close();
    await a.stop();
  });
});
