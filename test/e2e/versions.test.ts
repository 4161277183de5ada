import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Consistency, Kvs2Client, type WatchEvent, WatchEvent_Kind } from '../../src/client/index.js';
import { decodeToken } from '../../src/service/consistency-token.js';
import { rewriteAsFormatOne } from '../support/format-one-store.js';
import { kafkaBrokers, needsKafka } from '../support/kafka-env.js';
import { tempDir } from '../support/paths.js';
import { ServerProcess } from '../support/server-process.js';

const b = (text: string): Buffer => Buffer.from(text);

/** The log position a write's token names: its record's offset + 1, which is the version it gives its key. */
function positionOf(token: Buffer): number {
  const { offsets } = decodeToken(token);
  assert.equal(offsets.size, 1, 'a single write names one partition');
  return [...offsets.values()][0] as number;
}

/** Every key the node holds with its value and version, read with `after` (all pages). */
async function contentOf(client: Kvs2Client, after: Buffer[]): Promise<Array<[string, string, number]>> {
  const content: Array<[string, string, number]> = [];
  let continuation: Buffer = Buffer.alloc(0);
  for (;;) {
    const page = await client.scan({ consistency: Consistency.CONSISTENCY_AT_LEAST, after, continuation, limit: 100 });
    for (const item of page.items) content.push([item.key.toString(), item.value.toString(), item.version]);
    if (page.continuation.length === 0) return content;
    continuation = page.continuation;
  }
}

/**
 * A sequence of writes through `clients` (round robin): puts, overwrites, deletes (keys 03 and 09 stay
 * deleted) and re-creates (keys 00 and 06). Returns
 * what each key must hold after it, with the version its last write's token names, and every token.
 */
async function writeHistory(
  clients: readonly Kvs2Client[],
  prefix: string,
): Promise<{ expected: Map<string, [string, number]>; tokens: Buffer[] }> {
  const expected = new Map<string, [string, number]>();
  const tokens: Buffer[] = [];
  let turn = 0;
  const next = (): Kvs2Client => clients[turn++ % clients.length] as Kvs2Client;
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 12; i++) {
      const key = `${prefix}/${String(i).padStart(2, '0')}`;
      if (round === 1 && i % 3 === 0) {
        const { token } = await next().delete({ key: b(key) });
        tokens.push(token);
        expected.delete(key);
      } else if (round === 0 || (round === 1 && i % 2 === 0) || (round === 2 && i % 6 !== 3)) {
        const value = `${key} in round ${round}`;
        const { token } = await next().set({ key: b(key), value: b(value) });
        tokens.push(token);
        expected.set(key, [value, positionOf(token)]);
      }
    }
  }
  return { expected, tokens };
}

function sorted(expected: Map<string, [string, number]>): Array<[string, string, number]> {
  return [...expected]
    .sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
    .map(([key, [value, version]]) => [key, value, version]);
}

describe('versions: the log position of each key’s last write', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  const running: ServerProcess[] = [];
  const clients: Kvs2Client[] = [];
  const connect = (node: ServerProcess): Kvs2Client => {
    const client = new Kvs2Client(node.address, { timeoutMs: 20_000 });
    clients.push(client);
    return client;
  };
  /**
   * A node, once its replica has started and caught up: a write answered before the replica starts may
   * carry a token tagged for no log yet (the log's identity is known to the service only then).
   */
  const startEmbedded = async (dataDir: string): Promise<ServerProcess> => {
    const node = await ServerProcess.start({ dataDir });
    running.push(node);
    await node.waitUntilCaughtUp();
    return node;
  };
  before(async () => {
    dir = await tempDir('versions');
  });
  after(async () => {
    for (const client of clients) client.close();
    await Promise.all(running.map((node) => node.stop()));
    await dir.remove();
  });

  test('embedded log: Get, MultiGet, Scan and Watch return offset + 1 of the last write; a restart keeps them', async () => {
    const dataDir = `${dir.path}/embedded`;
    let node = await startEmbedded(dataDir);
    let client = connect(node);
    const first = await client.set({ key: b('w/first'), value: b('0') });
    const watch = client.watch({ prefix: b('w/'), after: first.token });
    const events: WatchEvent[] = [];
    watch.on('data', (event: WatchEvent) => events.push(event));
    watch.on('error', () => {});

    const { expected, tokens } = await writeHistory([client], 'w');
    expected.set('w/first', ['0', positionOf(first.token)]);
    const after = tokens.slice(-1);
    assert.deepEqual(await contentOf(client, after), sorted(expected));

    // A key deleted and then re-created has a new, higher version than before the delete.
    const recreated = 'w/00';
    const [, version] = expected.get(recreated) as [string, number];
    assert.ok(version > positionOf(tokens[0] as Buffer), 'the re-created key has a higher version');

    const get = await client.get({ key: b(recreated), consistency: Consistency.CONSISTENCY_AT_LEAST, after });
    assert.equal(get.version, version);
    const missing = await client.get({ key: b('w/none') });
    assert.equal(missing.version, 0);
    const keys = ['w/00', 'w/none', 'w/03', 'w/01'];
    const multi = await client.multiGet({ keys: keys.map(b), consistency: Consistency.CONSISTENCY_AT_LEAST, after });
    assert.deepEqual(
      multi.parts.map((part) => part.version),
      keys.map((key) => expected.get(key)?.[1] ?? 0),
    );
    const keysOnly = await client.scan({ prefix: b('w/'), keysOnly: true });
    assert.deepEqual(
      keysOnly.items.map((item) => [item.key.toString(), item.version]),
      sorted(expected).map(([key, , v]) => [key, v]),
    );

    // The watch saw every change after the first write, each with its own position.
    const changes = tokens.length;
    const deadline = Date.now() + 20_000;
    while (events.filter((event) => event.kind !== WatchEvent_Kind.PROGRESS).length < changes) {
      assert.ok(Date.now() < deadline, `watch events: ${events.length} of ${changes}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    watch.cancel();
    const changed = events.filter((event) => event.kind !== WatchEvent_Kind.PROGRESS);
    assert.deepEqual(
      changed.map((event) => event.version),
      tokens.map(positionOf),
    );
    for (const event of events) if (event.kind === WatchEvent_Kind.PROGRESS) assert.equal(event.version, 0);

    assert.equal((await node.stop('SIGTERM')).code, 0);
    node = await startEmbedded(dataDir);
    client = connect(node);
    assert.deepEqual(await contentOf(client, after), sorted(expected));
  });

  test('embedded log: a store of a kvs2 before versions is upgraded at start, every key at the applied offset', async () => {
    const dataDir = `${dir.path}/embedded-upgrade`;
    let node = await startEmbedded(dataDir);
    let client = connect(node);
    const { expected, tokens } = await writeHistory([client], 'u');
    const last = positionOf(tokens.at(-1) as Buffer);
    await client.get({ key: b('u/00'), consistency: Consistency.CONSISTENCY_AT_LEAST, after: tokens.slice(-1) });
    assert.equal((await node.stop('SIGTERM')).code, 0);
    await rewriteAsFormatOne(`${dataDir}/store`, 1);

    node = await startEmbedded(dataDir);
    const upgraded = await node.waitForLine((line) => line.msg.startsWith('the store was written by an older kvs2'));
    assert.deepEqual([upgraded.level, upgraded.keys, upgraded.version], ['info', expected.size, last]);
    client = connect(node);
    // The stand-in: every key at the applied offset, the position of the last write it holds.
    assert.deepEqual(
      await contentOf(client, tokens.slice(-1)),
      sorted(expected).map(([key, value]) => [key, value, last]),
    );
    const { token } = await client.set({ key: b('u/00'), value: b('after'), waitForApply: true });
    assert.ok(positionOf(token) > last);
    assert.equal((await client.get({ key: b('u/00') })).version, positionOf(token));
  });

  describe('on Kafka', needsKafka(), () => {
    let brokers: string;
    before(() => {
      brokers = kafkaBrokers().join(',');
    });
    const startNode = async (name: string, topic: string, extra: readonly string[] = []): Promise<ServerProcess> => {
      const node = await ServerProcess.start({
        dataDir: `${dir.path}/${name}`,
        args: ['--kafka-brokers', brokers, '--topic', topic, '--partitions', '3', ...extra],
      });
      running.push(node);
      await node.waitUntilCaughtUp();
      return node;
    };

    test('every node of a topic, new ones too (from the topic or a peer), reports the same versions: the offsets', async () => {
      const topic = `kvs2-test-${randomUUID()}`;
      const a = await startNode('kafka-a', topic);
      const bNode = await startNode('kafka-b', topic);
      const both = [connect(a), connect(bNode)];
      const { expected, tokens } = await writeHistory(both, 'k');
      const want = sorted(expected);
      for (const client of both) assert.deepEqual(await contentOf(client, tokens), want);

      const fresh = await startNode('kafka-fresh', topic);
      assert.deepEqual(await contentOf(connect(fresh), tokens), want);
      const fromPeer = await startNode('kafka-peer', topic, ['--bootstrap-from', a.address]);
      await fromPeer.waitForLine((line) => line.msg.startsWith('bootstrapped from peer'));
      assert.deepEqual(await contentOf(connect(fromPeer), tokens), want);

      // A restart keeps them.
      assert.equal((await bNode.stop('SIGTERM')).code, 0);
      const restarted = await startNode('kafka-b', topic);
      assert.deepEqual(await contentOf(connect(restarted), tokens), want);
    });

    test('a store of a kvs2 before versions is cleared and rebuilt from the topic, with the offsets as versions', async () => {
      const topic = `kvs2-test-${randomUUID()}`;
      let node = await startNode('kafka-upgrade', topic);
      const { expected, tokens } = await writeHistory([connect(node)], 'up');
      const want = sorted(expected);
      assert.deepEqual(await contentOf(connect(node), tokens), want);
      assert.equal((await node.stop('SIGTERM')).code, 0);
      await rewriteAsFormatOne(`${dir.path}/kafka-upgrade/store`, 1);

      node = await startNode('kafka-upgrade', topic);
      const warned = await node.waitForLine((line) => line.msg.startsWith('the store was written by an older kvs2'));
      assert.equal(warned.level, 'warn');
      assert.match(warned.msg, /cleared, rebuilding it from the start of/);
      assert.deepEqual(await contentOf(connect(node), tokens), want);
    });
  });
});
