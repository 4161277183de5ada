import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  ConditionKind,
  Consistency,
  Kvs2Client,
  type Kvs2ClientError,
  SetStatus,
  WatchEvent_Kind,
} from '../../src/client/kvs2-client.js';
import type { Condition, WatchEvent } from '../../src/gen/kvs2.js';
import { KafkaLog } from '../../src/log/kafka/kafka-log.js';
import { hasReached } from '../../src/offsets.js';
import { kafkaBrokers, needsKafka } from '../support/kafka-env.js';
import { tempDir } from '../support/paths.js';
import { PlainKafka } from '../support/plain-kafka.js';
import { ServerProcess } from '../support/server-process.js';

const b = (text: string): Buffer => Buffer.from(text);
const IF_ABSENT: Condition = { kind: ConditionKind.CONDITION_ABSENT, version: 0 };
const ifVersion = (version: number): Condition => ({ kind: ConditionKind.CONDITION_VERSION, version });
const LATEST = Consistency.CONSISTENCY_LATEST;

/**
 * How many committed records the topic holds now, read with kvs2's own reader up to the end offsets (a
 * consumer that waits for the record at end - 1 would wait forever: the last offset of a partition written in
 * transactions is a commit or abort marker, never delivered).
 */
async function committedRecords(brokers: string, topic: string): Promise<number> {
  const log = new KafkaLog({ brokers: brokers.split(','), topic });
  const stop = new AbortController();
  try {
    await log.open(AbortSignal.timeout(20_000));
    const end = await log.endOffsets(AbortSignal.timeout(20_000));
    let records = 0;
    const position = new Map<number, number>();
    if (hasReached(position, end)) return 0;
    for await (const batch of log.read(new Map(), AbortSignal.any([stop.signal, AbortSignal.timeout(30_000)]))) {
      records += batch.records.length;
      for (const [partition, next] of batch.nextOffsets) position.set(partition, next);
      if (hasReached(position, end)) break;
    }
    return records;
  } finally {
    stop.abort();
    await log.close();
  }
}

/** Every key of a node with its value and version, read with a barrier (LATEST), page by page. */
async function everything(client: Kvs2Client): Promise<Map<string, [string, number]>> {
  const map = new Map<string, [string, number]>();
  let continuation: Buffer = Buffer.alloc(0);
  for (;;) {
    const page = await client.scan({ continuation, consistency: LATEST, limit: 500 });
    for (const item of page.items) map.set(item.key.toString(), [item.value.toString('base64'), item.version]);
    if (page.continuation.length === 0) return map;
    continuation = page.continuation;
  }
}

/**
 * One read-modify-write increment, retried on CONFLICT; its value names the writer, so that watches can
 * tell attempts apart. Resolves with the value it wrote.
 */
async function increment(client: Kvs2Client, key: Buffer, writer: string): Promise<string> {
  for (;;) {
    const current = await client.get({ key, consistency: LATEST });
    const count = Number(current.data.toString().split(':')[0]) + 1;
    const value = `${count}:${writer}`;
    const reply = await client.set({ key, value: b(value), condition: ifVersion(current.version) }, 30_000);
    if (reply.status === SetStatus.APPLIED) return value;
    assert.equal(reply.status, SetStatus.CONFLICT);
  }
}

/** The values of a key's PUT events a node delivers from `after` on, until `count` arrived. */
function watchValues(client: Kvs2Client, key: Buffer, after: Buffer) {
  const values: string[] = [];
  const stream = client.watch({ key, after });
  stream.on('data', (event: WatchEvent) => {
    if (event.kind === WatchEvent_Kind.PUT) values.push(event.value.toString());
  });
  stream.on('error', () => {});
  return {
    values,
    async until(count: number, timeoutMs = 30_000): Promise<string[]> {
      const deadline = Date.now() + timeoutMs;
      while (values.length < count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      return values;
    },
    stop: () => stream.cancel(),
  };
}

/** Nodes on one Kafka topic family and a client of each, all closed together. */
class Fleet {
  readonly #nodes: ServerProcess[] = [];
  readonly #clients: Kvs2Client[] = [];

  constructor(
    private readonly dir: string,
    private readonly brokers: string,
  ) {}

  /** A node caught up with `topic` (`args` after the Kafka flags), and a client with a connection of its own. */
  async start(name: string, topic: string, args: string[]): Promise<{ node: ServerProcess; client: Kvs2Client }> {
    const node = await ServerProcess.start({
      dataDir: `${this.dir}/${name}`,
      args: ['--kafka-brokers', this.brokers, '--topic', topic, ...args],
    });
    this.#nodes.push(node);
    await node.waitUntilCaughtUp(30_000);
    const client = new Kvs2Client(node.address, { ownConnection: true });
    this.#clients.push(client);
    return { node, client };
  }

  async close(): Promise<void> {
    for (const client of this.#clients) client.close();
    await Promise.all(this.#nodes.map((node) => node.stop()));
  }
}

/** Compare-and-set on Kafka with several nodes (validate-then-commit, docs/cas-on-kafka.md). */
describe('conditional writes on Kafka, several nodes', needsKafka(), () => {
  let brokers: string;
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let plain: PlainKafka;
  let fleet: Fleet;
  const startNode = (name: string, topic: string, extra: string[] = []) =>
    fleet.start(name, topic, ['--partitions', '3', ...extra]);

  before(async () => {
    brokers = kafkaBrokers().join(',');
    dir = await tempDir('kafka-cas');
    plain = new PlainKafka(brokers);
    fleet = new Fleet(dir.path, brokers);
  });
  after(async () => {
    await fleet.close();
    await plain.close();
    await dir.remove();
  });

  test('increments from three nodes end at exactly N everywhere, and each node applied exactly the APPLIED ones', async () => {
    const topic = `kvs2-cas-${randomUUID()}`;
    const nodes = [await startNode('inc-a', topic), await startNode('inc-b', topic), await startNode('inc-c', topic)];
    const key = b('counter');
    const created = await nodes[0]?.client.set({ key, value: b('0:init'), condition: IF_ABSENT, waitForApply: true });
    assert.equal(created?.status, SetStatus.APPLIED);
    const watches = nodes.map(({ client }) => watchValues(client, key, created?.token as Buffer));
    const perNode = 8;
    const written = await Promise.all(
      nodes.flatMap(({ client }, n) =>
        Array.from({ length: perNode }, (_, i) => increment(client, key, `node${n}-${i}`)),
      ),
    );
    const N = nodes.length * perNode;
    for (const { client } of nodes) {
      const final = await client.get({ key, consistency: LATEST });
      assert.equal(final.data.toString().split(':')[0], String(N));
    }
    const versions = await Promise.all(nodes.map(({ client }) => client.get({ key, consistency: LATEST })));
    assert.equal(new Set(versions.map((v) => v.version)).size, 1, 'every node reports the same version');
    // Every node delivered exactly the values whose writers heard APPLIED: no aborted attempt, none missing.
    for (const watch of watches) {
      const seen = await watch.until(N);
      watch.stop();
      assert.deepEqual([...seen].sort(), [...written].sort());
    }
  });

  test('a create-if-absent race across nodes has exactly one winner, which every node serves', async () => {
    const topic = `kvs2-cas-${randomUUID()}`;
    const nodes = [await startNode('race-a', topic), await startNode('race-b', topic)];
    const key = b('the-lock');
    const replies = await Promise.all(
      nodes.flatMap(({ client }, n) =>
        Array.from({ length: 6 }, (_, i) =>
          client.set({ key, value: b(`owner-${n}-${i}`), condition: IF_ABSENT }).then((reply) => ({ reply, n, i })),
        ),
      ),
    );
    const winners = replies.filter(({ reply }) => reply.status === SetStatus.APPLIED);
    assert.equal(winners.length, 1);
    const [winner] = winners as [(typeof winners)[number]];
    for (const { reply } of replies) {
      if (reply.status === SetStatus.CONFLICT) assert.equal(reply.version, winner.reply.version);
    }
    for (const { client } of nodes) {
      const read = await client.get({ key, consistency: LATEST });
      assert.deepEqual([read.data.toString(), read.version], [`owner-${winner.n}-${winner.i}`, winner.reply.version]);
    }
  });

  test("a plain Kafka producer's write between a read and the conditional write makes it conflict, and survives", async () => {
    const topic = `kvs2-cas-${randomUUID()}`;
    const { client } = await startNode('plain-a', topic);
    const { client: other } = await startNode('plain-b', topic);
    const key = b('shared');
    await client.set({ key, value: b('kvs2'), waitForApply: true });
    const read = await client.get({ key, consistency: LATEST });
    await plain.produce(topic, [{ key, value: b('from-another-producer') }]);
    const cas = await client.set({ key, value: b('lost-update'), condition: ifVersion(read.version) });
    assert.equal(cas.status, SetStatus.CONFLICT);
    assert.ok(cas.version > read.version);
    for (const c of [client, other]) {
      const now = await c.get({ key, consistency: LATEST });
      assert.deepEqual([now.data.toString(), now.version], ['from-another-producer', cas.version]);
    }
  });

  test('a conditional Write spans keys only within a partition: refused across partitions, applied with one hash tag', async () => {
    const topic = `kvs2-cas-${randomUUID()}`;
    // Two keys murmur2 puts in different partitions of the 3 (checked by the refusal below).
    const apart = [b('{acct:7}:balance'), b('{acct:7}:history')];
    const plainNode = await startNode('tags-plain', topic);
    const mutations = apart.map((key) => ({ key, value: b('1'), delete: false, condition: IF_ABSENT }));
    await assert.rejects(plainNode.client.write({ mutations }), (error: Kvs2ClientError) => {
      assert.equal(error.kvs2Code, 'INVALID_ARGUMENT');
      assert.match(error.message, /share a partition/);
      return true;
    });
    await plainNode.node.stop();
    const tagged = await startNode('tags-on', `${topic}-tags`, ['--kafka-partitioner', 'hash-tags']);
    const applied = await tagged.client.write({ mutations, waitForApply: true });
    assert.equal(applied.status, SetStatus.APPLIED);
    const again = await tagged.client.write({ mutations });
    assert.deepEqual(
      [again.status, again.results.map((r) => r.version)],
      [SetStatus.CONFLICT, applied.results.map((r) => r.version)],
    );
  });

  test('after forced compaction of a contended workload, a freshly bootstrapped node has the same keys, values and versions', async () => {
    const topic = `kvs2-cas-${randomUUID()}`;
    await plain.createTopic(topic, 3, {
      'cleanup.policy': 'compact',
      'segment.ms': '100',
      'min.cleanable.dirty.ratio': '0.01',
      'min.compaction.lag.ms': '0',
      'delete.retention.ms': '86400000',
    });
    const a = await startNode('compact-a', topic);
    const bb = await startNode('compact-b', topic);
    const keys = Array.from({ length: 6 }, (_, i) => b(`hot-${i}`));
    for (const key of keys) await a.client.set({ key, value: b('0:init'), condition: IF_ABSENT });
    // Contended increments from both nodes (conflicts: aborted transactions), plain writes and deletes between.
    const work = [a, bb].flatMap(({ client }, n) =>
      Array.from({ length: 12 }, (_, i) => increment(client, keys[i % keys.length] as Buffer, `n${n}-${i}`)),
    );
    for (let i = 0; i < 10; i++) {
      await plain.produce(topic, [{ key: b(`plain-${i % 4}`), value: b(`p${i}`) }]);
      if (i % 3 === 0) await bb.client.delete({ key: b(`plain-${i % 4}`) });
    }
    await Promise.all(work);
    await a.client.delete({
      key: keys[0] as Buffer,
      condition: ifVersion((await a.client.get({ key: keys[0] as Buffer, consistency: LATEST })).version),
    });
    // Records committed to the topic: creates, increments, plain writes, deletes, the conditional delete.
    let committed = keys.length + work.length + 10 + 4 + 1;
    // Keep the log moving so that segments roll and the cleaner runs, until it has removed records.
    const deadline = Date.now() + 90_000;
    let compacted = (await committedRecords(brokers, topic)) < committed;
    for (let filler = 0; !compacted && Date.now() < deadline; filler++) {
      await plain.produce(topic, [{ key: b(`filler-${filler % 3}`), value: b('x') }]);
      committed++;
      compacted = (await committedRecords(brokers, topic)) < committed;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.ok(compacted, `the cleaner removed some of the ${committed} records committed`);
    const fresh = await startNode('compact-fresh', topic);
    const expected = await everything(a.client);
    assert.deepEqual(await everything(bb.client), expected);
    assert.deepEqual(await everything(fresh.client), expected);
    assert.ok(!expected.has('hot-0'), 'the conditional delete is applied everywhere');
  });
});

/** A writer stopped or killed in the middle of conditional writes. */
describe('conditional writes on Kafka when a writer dies or stalls mid-transaction', needsKafka(), () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let fleet: Fleet;
  // A call may wait behind a dead writer's transaction for its 5 s timeout and the brokers' check: a deadline
  // longer than that gives every call a definite answer.
  const startNode = (name: string, topic: string) =>
    fleet.start(name, topic, ['--partitions', '1', '--request-timeout-ms', '30000']);

  before(async () => {
    dir = await tempDir('kafka-cas-faults');
    fleet = new Fleet(dir.path, kafkaBrokers().join(','));
  });
  after(async () => {
    await fleet.close();
    await dir.remove();
  });

  /**
   * Increments from a loop until stopped; counts APPLIED answers, and calls whose outcome the caller cannot
   * know (the node died under them).
   */
  function incrementLoop(client: Kvs2Client, key: Buffer, writer: string) {
    let applied = 0;
    let unknown = 0;
    const unknownCodes: string[] = [];
    let running = true;
    const done = (async () => {
      for (let i = 0; running; i++) {
        try {
          await increment(client, key, `${writer}-${i}`);
          applied++;
        } catch (error) {
          const code = (error as Kvs2ClientError).kvs2Code;
          // Definite: the node says nothing was written. Anything else (the node gone): unknown.
          if (code !== 'LOG_UNAVAILABLE') {
            unknown++;
            unknownCodes.push(`${code}: ${(error as Error).message}`);
          }
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
    })();
    return {
      stop: async () => {
        running = false;
        await done;
        return { applied, unknown, unknownCodes };
      },
    };
  }

  test('kill -9 of a writer mid-transaction: nothing of it visible unless answered, the partition moves on, a restart fences at once', async () => {
    const topic = `kvs2-cas-kill-${randomUUID()}`;
    const a = await startNode('kill-a', topic);
    const bb = await startNode('kill-b', topic);
    const key = b('kill-counter');
    await bb.client.set({ key, value: b('0:init'), condition: IF_ABSENT, waitForApply: true });
    const fromB = incrementLoop(bb.client, key, 'b');
    const fromA = incrementLoop(a.client, key, 'a');
    // Let both write for a while, then kill A in the middle of whatever it is doing.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await a.node.kill9();
    const killedA = await fromA.stop();
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const restarted = await startNode('kill-a', topic);
    const afterRestart = Date.now();
    const resumed = await restarted.client.set({ key: b('after-restart'), value: b('x'), condition: IF_ABSENT });
    assert.equal(resumed.status, SetStatus.APPLIED);
    console.log(`# a conditional write on the restarted node took ${Date.now() - afterRestart} ms`);
    const fromBTotals = await fromB.stop();
    const final = await bb.client.get({ key, consistency: LATEST });
    const count = Number(final.data.toString().split(':')[0]);
    const applied = killedA.applied + fromBTotals.applied;
    assert.ok(
      count >= applied && count <= applied + killedA.unknown + fromBTotals.unknown,
      `counter ${count}: ${applied} applied, ${killedA.unknown + fromBTotals.unknown} of unknown outcome`,
    );
    assert.ok(fromBTotals.applied > 0, 'B kept writing');
    const onRestarted = await restarted.client.get({ key, consistency: LATEST });
    assert.deepEqual([onRestarted.data, onRestarted.version], [final.data, final.version]);
  });

  test('SIGSTOP of a writer past the transaction timeout: its attempts fail or apply, never both, and nothing is lost', async () => {
    const topic = `kvs2-cas-stop-${randomUUID()}`;
    const a = await startNode('stop-a', topic);
    const bb = await startNode('stop-b', topic);
    const key = b('stop-counter');
    await bb.client.set({ key, value: b('0:init'), condition: IF_ABSENT, waitForApply: true });
    const fromA = incrementLoop(a.client, key, 'a');
    const fromB = incrementLoop(bb.client, key, 'b');
    await new Promise((resolve) => setTimeout(resolve, 1000));
    a.node.child.kill('SIGSTOP');
    const counted = async (): Promise<number> =>
      Number((await bb.client.get({ key, consistency: LATEST })).data.toString().split(':')[0]);
    // B goes on while A is stopped: once the coordinator has aborted whatever A left open (its 5 s
    // transaction timeout, checked every second), the partition moves again.
    const atStop = await counted();
    const stoppedAt = Date.now();
    while ((await counted()) < atStop + 3) {
      assert.ok(Date.now() - stoppedAt < 60_000, 'B made progress while A was stopped');
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    console.log(`# B made 3 increments ${Date.now() - stoppedAt} ms after A was stopped`);
    // Keep A stopped past its transaction timeout, so that a transaction it had open is aborted under it.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, 6000 - (Date.now() - stoppedAt))));
    a.node.child.kill('SIGCONT');
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const totalsA = await fromA.stop();
    const totalsB = await fromB.stop();
    const final = await bb.client.get({ key, consistency: LATEST });
    // Every call got a definite answer (the clients' deadline, 30 s, outlasted the stop): the counter is exact.
    assert.deepEqual([...totalsA.unknownCodes, ...totalsB.unknownCodes], []);
    assert.equal(final.data.toString().split(':')[0], String(totalsA.applied + totalsB.applied));
    const onA = await a.client.get({ key, consistency: LATEST });
    assert.deepEqual([onA.data, onA.version], [final.data, final.version]);
  });
});
