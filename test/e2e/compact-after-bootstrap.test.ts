import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { statSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Kvs2Client } from '../../src/client/index.js';
import { runKvs2 } from '../support/cli-process.js';
import { kafkaBrokers, needsKafka } from '../support/kafka-env.js';
import { tempDir } from '../support/paths.js';
import { ServerProcess } from '../support/server-process.js';
import { shuffledIndexes } from '../support/shuffled.js';

const b = (text: string): Buffer => Buffer.from(text);
const KEYS = 6_000;
const keyOf = (i: number): Buffer => b(`key-${String(i).padStart(5, '0')}`);
const valueFor = (i: number): Buffer => b(`value ${i} `.padEnd(100, '.'));
const deleted = (i: number): boolean => i % 7 === 0;

/** --compact-after-bootstrap on a real Kafka topic: a node reads the topic, rewrites its store, then serves. */
describe('a node that compacts its store after reading the topic', needsKafka(), () => {
  let brokers: string;
  let dir: Awaited<ReturnType<typeof tempDir>>;
  const running: ServerProcess[] = [];
  const clients: Kvs2Client[] = [];
  const topic = `kvs2-test-${randomUUID()}`;

  const startNode = async (name: string, extra: readonly string[] = [], onTopic = topic): Promise<ServerProcess> => {
    const node = await ServerProcess.start({
      dataDir: `${dir.path}/${name}`,
      args: ['--kafka-brokers', brokers, '--topic', onTopic, '--partitions', '3', ...extra],
    });
    running.push(node);
    return node;
  };
  const client = (node: ServerProcess): Kvs2Client => {
    const c = new Kvs2Client(node.address);
    clients.push(c);
    return c;
  };
  const dataMdbBytes = (name: string): number => statSync(`${dir.path}/${name}/store/data.mdb`).size;

  before(async () => {
    brokers = kafkaBrokers().join(',');
    dir = await tempDir('compact-after-bootstrap');
  });
  after(async () => {
    for (const c of clients) c.close();
    await Promise.all(running.map((node) => node.stop()));
    await dir.remove();
  });

  test('holds every key as the writer does, in a store the size `kvs2 compact` makes, and goes on applying', async () => {
    // The dataset, written in random key order (as a topic's keys arrive), every 7th key deleted again.
    const writer = await startNode('writer');
    await writer.waitUntilCaughtUp(30_000);
    const writes = client(writer);
    const order = shuffledIndexes(KEYS, 12_345);
    let token: Buffer = Buffer.alloc(0);
    for (let at = 0; at < KEYS; at += 100) {
      const mutations = order.slice(at, at + 100).map((i) => ({ key: keyOf(i), value: valueFor(i), delete: false }));
      token = (await writes.write({ mutations })).token;
    }
    for (let i = 0; i < KEYS; i += 7) token = (await writes.delete({ key: keyOf(i) })).token;
    const live = Array.from({ length: KEYS }, (_, i) => i).filter((i) => !deleted(i)).length;

    // One node reads the topic as usual, one with the flag; both caught up with every write above.
    const plain = await startNode('plain');
    const compacting = await startNode('compacting', ['--compact-after-bootstrap', 'on']);
    const compactedLine = await compacting.waitForLine((line) => line.msg.startsWith('compacted the store'), 60_000);
    assert.equal(compactedLine.keys, live);
    assert.ok((compactedLine.bytesAfter as number) < (compactedLine.bytesBefore as number), compactedLine.msg);
    await Promise.all([plain.waitUntilCaughtUp(60_000), compacting.waitUntilCaughtUp(60_000)]);
    assert.equal(plain.lines.filter((line) => line.msg.startsWith('compacted the store')).length, 0);

    // The same keys, values and versions as the writer's.
    const keys = Array.from({ length: KEYS }, (_, i) => keyOf(i));
    const [expected, actual] = await Promise.all(
      [writer, compacting].map(async (node) => (await client(node).multiGet({ keys, after: [token] })).parts),
    );
    (actual ?? []).forEach((part, i) => {
      if (deleted(i)) assert.equal(part.status, 1, `key ${i} is deleted`);
      else assert.equal(part.data.toString(), valueFor(i).toString(), `key ${i}`);
      assert.equal(part.version, expected?.[i]?.version, `key ${i}'s version`);
    });

    // Status says how full each store's pages are: the plain node's as a topic read leaves them.
    const [plainFill, compactFill] = await Promise.all(
      [plain, compacting].map(async (node) => (await client(node).status()).storeLeafFill),
    );
    assert.ok((plainFill as number) > 0.5 && (plainFill as number) < 0.85, `plain node: ${plainFill}`);
    assert.ok((compactFill as number) >= 0.9, `compacted node: ${compactFill}`);

    // Writes after the rewrite reach it: its own replica resumed from the rewritten store's offsets.
    const later = await writes.set({ key: b('after-the-rewrite'), value: b('applied') });
    const read = await client(compacting).get({ key: b('after-the-rewrite'), after: [later.token] });
    assert.equal(read.data.toString(), 'applied');

    // Its store was rewritten to the size `kvs2 compact` gives the plain node's (same entries, in key order),
    // and is smaller than the plain node's random-order one.
    await Promise.all([plain.stop(), compacting.stop()]);
    const plainBytes = dataMdbBytes('plain');
    const compactingBytes = dataMdbBytes('compacting');
    assert.ok(compactingBytes < plainBytes * 0.85, `${compactingBytes} bytes against ${plainBytes} read as usual`);
    const compact = await runKvs2(['compact', '--data-dir', `${dir.path}/plain`]);
    assert.equal(compact.code, 0, compact.stderr);
    // The rewrite's own size against it: the plain node holds one key more (the write after the rewrite),
    // which may take one more page; the compacting node's file has since grown by the pages that write and
    // its progress records copied (LMDB copies on write).
    const rewritten = compactedLine.bytesAfter as number;
    assert.ok(Math.abs(rewritten - dataMdbBytes('plain')) <= 8192, `${rewritten} against ${dataMdbBytes('plain')}`);

    // A restart finds a store that is not empty: it resumes, without a second rewrite.
    const restarted = await startNode('compacting', ['--compact-after-bootstrap', 'on']);
    await restarted.waitUntilCaughtUp(30_000);
    assert.equal(restarted.lines.filter((line) => line.msg.startsWith('compacted the store')).length, 0);
    const again = await client(restarted).get({ key: b('after-the-rewrite'), after: [later.token] });
    assert.equal(again.data.toString(), 'applied');
  });

  test("after a peer's snapshot: a random-order peer's is rewritten, a compact peer's is not", async () => {
    const peerTopic = `kvs2-test-${randomUUID()}`;
    const onTopic = (name: string, extra: readonly string[]) => startNode(name, extra, peerTopic);
    // A peer filled in random key order by its own writes.
    const randomPeer = await onTopic('random-peer', []);
    await randomPeer.waitUntilCaughtUp(30_000);
    const order = shuffledIndexes(KEYS, 12_345);
    let token: Buffer = Buffer.alloc(0);
    for (let at = 0; at < KEYS; at += 100) {
      const mutations = order.slice(at, at + 100).map((i) => ({ key: keyOf(i), value: valueFor(i), delete: false }));
      token = (await client(randomPeer).write({ mutations })).token;
    }
    await client(randomPeer).get({ key: keyOf(0), after: [token] });

    // Its image is rewritten by a node with the flag, which is then a compact peer: its own image is kept.
    const fromRandom = await onTopic('from-random', [
      '--bootstrap-from',
      randomPeer.address,
      '--compact-after-bootstrap',
      'on',
    ]);
    const rewritten = await fromRandom.waitForLine((line) => line.msg.startsWith('compacted the store'), 60_000);
    assert.match(rewritten.msg, /filled from peer 127\.0\.0\.1:\d+ \(leaf pages \d+% full\)/);
    assert.ok((rewritten.fill as number) < 0.85, rewritten.msg);
    await fromRandom.waitUntilCaughtUp(30_000);
    const fromCompact = await onTopic('from-compact', [
      '--bootstrap-from',
      fromRandom.address,
      '--compact-after-bootstrap',
      'on',
    ]);
    const kept = await fromCompact.waitForLine((line) => line.msg.includes('in key order already'), 60_000);
    assert.ok((kept.fill as number) >= 0.85, kept.msg);
    await fromCompact.waitUntilCaughtUp(30_000);
    assert.equal(fromCompact.lines.filter((line) => line.msg.startsWith('compacted the store')).length, 0);
    assert.ok(dataMdbBytes('from-compact') < dataMdbBytes('random-peer') * 0.85);

    // Both hold every key as the writer does.
    const keys = Array.from({ length: KEYS }, (_, i) => keyOf(i));
    for (const node of [fromRandom, fromCompact]) {
      const reply = await client(node).multiGet({ keys, after: [token] });
      reply.parts.forEach((part, i) => {
        assert.equal(part.data.toString(), valueFor(i).toString(), `key ${i}`);
      });
    }
  });

  test('is refused without Kafka, and takes only on or off', async () => {
    const embedded = await runKvs2(['serve', '--data-dir', `${dir.path}/embedded`, '--compact-after-bootstrap', 'on']);
    assert.equal(embedded.code, 2);
    assert.match(embedded.stderr, /--compact-after-bootstrap.*needs --kafka-brokers/);
    const wrong = await runKvs2([
      'serve',
      '--data-dir',
      `${dir.path}/wrong`,
      '--kafka-brokers',
      brokers,
      '--compact-after-bootstrap',
      'yes',
    ]);
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /--compact-after-bootstrap.*expected on or off, got 'yes'/);
  });
});
