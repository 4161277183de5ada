import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { Consistency, Kvs2Client, ReadStatus } from '../../src/client/kvs2-client.js';
import type { WatchEvent } from '../../src/gen/kvs2.js';
import { eventually } from '../support/grpc-clients.js';
import { kafkaBrokers, needsKafka } from '../support/kafka-env.js';
import { tempDir } from '../support/paths.js';
import { ServerProcess } from '../support/server-process.js';

const b = (text: string): Buffer => Buffer.from(text);

/** Read-your-writes across nodes, through a real Kafka topic. */
describe('consistency across two nodes on Kafka', needsKafka(), () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let nodes: ServerProcess[];
  let a: Kvs2Client;
  let bNode: Kvs2Client;

  before(async () => {
    const brokers = kafkaBrokers().join(',');
    const topic = `kvs2-test-${randomUUID()}`;
    dir = await tempDir('kafka-consistency');
    const args = ['--kafka-brokers', brokers, '--topic', topic, '--partitions', '4'];
    nodes = [
      await ServerProcess.start({ dataDir: `${dir.path}/a`, args }),
      await ServerProcess.start({ dataDir: `${dir.path}/b`, args }),
    ];
    await Promise.all(nodes.map((node) => node.waitUntilCaughtUp()));
    a = new Kvs2Client(nodes[0]?.address ?? '');
    bNode = new Kvs2Client(nodes[1]?.address ?? '');
  });
  after(async () => {
    a.close();
    bNode.close();
    await Promise.all(nodes.map((node) => node.stop()));
    await dir.remove();
  });

  test('a read on B with the token of a write on A always sees the write', async () => {
    for (let i = 0; i < 100; i++) {
      const { token } = await a.set({ key: b(`ryw-${i % 7}`), value: b(`${i}`) });
      const read = await bNode.get({
        key: b(`ryw-${i % 7}`),
        consistency: Consistency.CONSISTENCY_AT_LEAST,
        after: [token],
      });
      assert.deepEqual([read.status, read.data.toString()], [ReadStatus.OK, `${i}`], `iteration ${i}`);
    }
  });

  test('a LATEST read on B sees a write acknowledged on A, without a token', async () => {
    for (let i = 0; i < 50; i++) {
      await a.set({ key: b('latest'), value: b(`${i}`) });
      const read = await bNode.get({ key: b('latest'), consistency: Consistency.CONSISTENCY_LATEST });
      assert.equal(read.data.toString(), `${i}`, `iteration ${i}`);
    }
  });

  test('a LOCAL read on B answers at once with whatever B has applied (old or new, never an error)', async () => {
    await a.set({ key: b('local'), value: b('old'), waitForApply: true });
    await eventually(async () => (await bNode.get({ key: b('local') })).status === ReadStatus.OK, 20_000, 'old on B');
    await a.set({ key: b('local'), value: b('new') });
    const read = await bNode.get({ key: b('local') });
    assert.ok(['old', 'new'].includes(read.data.toString()));
  });

  test('Write on A across partitions, Delete on A: MultiGet and Scan on B with the tokens see all of it', async () => {
    const mutations = Array.from({ length: 200 }, (_, i) => ({
      key: b(`batch/${i}`),
      value: b(`v${i}`),
      delete: false,
    }));
    const written = await a.write({ mutations });
    assert.ok(written.results.every((r) => r.code === status.OK));
    const deleted = await a.delete({ key: b('batch/7') });
    const after = [written.token, deleted.token];
    const read = await bNode.multiGet({ keys: mutations.map((m) => m.key), after });
    read.parts.forEach((part, i) => {
      assert.equal(part.status, i === 7 ? ReadStatus.NOT_FOUND : ReadStatus.OK, `batch/${i}`);
    });
    let count = 0;
    let continuation: Buffer = Buffer.alloc(0);
    do {
      const page = await bNode.scan({ prefix: b('batch/'), limit: 64, continuation, after });
      count += page.items.length;
      continuation = page.continuation;
    } while (continuation.length > 0);
    assert.equal(count, 199);
  });

  test('a watch on B sees writes made on A, and resumes from its last token after a disconnect', async () => {
    const events: WatchEvent[] = [];
    let stream = bNode.watch({ prefix: b('w/') });
    const subscribed = once(stream, 'metadata');
    stream.on('data', (event: WatchEvent) => events.push(event));
    stream.on('error', () => {});
    await subscribed;
    await a.set({ key: b('w/1'), value: b('one') });
    await a.set({ key: b('w/2'), value: b('two') });
    await eventually(() => events.filter((e) => e.kind !== 2).length === 2, 20_000, 'two events on B');
    const last = events.filter((e) => e.kind !== 2).at(-1);
    assert.ok(last);
    stream.cancel();

    await a.set({ key: b('w/3'), value: b('three') });
    const missed = await a.delete({ key: b('w/1') });
    await bNode.get({ key: b('w/1'), after: [missed.token] });
    const resumed: WatchEvent[] = [];
    stream = bNode.watch({ prefix: b('w/'), after: last.token });
    stream.on('data', (event: WatchEvent) => resumed.push(event));
    stream.on('error', () => {});
    await eventually(() => resumed.filter((e) => e.kind !== 2).length === 2, 20_000, 'the missed events');
    // Order is guaranteed per partition (per key), not across keys in different partitions.
    assert.deepEqual(
      resumed
        .filter((e) => e.kind !== 2)
        .map((e) => [e.kind, e.key.toString(), e.value.toString()])
        .sort((x, y) => String(x[1]).localeCompare(String(y[1]))),
      [
        [1, 'w/1', ''],
        [0, 'w/3', 'three'],
      ],
    );
    stream.cancel();
  });
});
