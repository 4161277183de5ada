import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { Consistency, Kvs2Client, ReadStatus, type WatchEvent_Kind } from '../../src/client/kvs2-client.js';
import type { WatchEvent } from '../../src/gen/kvs2.js';
import { decodeToken, encodeToken } from '../../src/service/consistency-token.js';
import { eventually } from '../support/grpc-clients.js';
import { tempDir } from '../support/paths.js';
import { ServerProcess } from '../support/server-process.js';

const b = (text: string): Buffer => Buffer.from(text);
const codeOf = (error: unknown): number => (error as { code: number }).code;

/** Collects a watch's events; `stop()` cancels it and resolves with how it ended. */
function collect(stream: ReturnType<Kvs2Client['watch']>) {
  const events: WatchEvent[] = [];
  stream.on('data', (event: WatchEvent) => events.push(event));
  const ended = new Promise<{ code: number; details: string } | 'end'>((resolve) => {
    stream.on('error', (error: { code: number; details: string }) => resolve(error));
    stream.on('end', () => resolve('end'));
  });
  return { events, ended, stop: () => stream.cancel() };
}

const changes = (events: WatchEvent[]) =>
  events.filter((e) => e.kind !== 2).map((e) => [e.kind as WatchEvent_Kind, e.key.toString(), e.value.toString()]);

describe('the extended KV API on the embedded log', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let server: ServerProcess;
  let client: Kvs2Client;

  before(async () => {
    dir = await tempDir('kv-api');
    server = await ServerProcess.start({ dataDir: dir.path, args: ['--max-batch-keys', '2000'] });
    await server.waitUntilCaughtUp();
    client = new Kvs2Client(server.address);
  });
  after(async () => {
    client.close();
    assert.equal((await server.stop()).code, 0);
    await dir.remove();
  });

  describe('consistency tokens', () => {
    test('a write token makes a read wait for the write; wait_for_apply makes the write visible at once', async () => {
      const { token } = await client.set({ key: b('t1'), value: b('v1') });
      assert.ok(token.length > 0);
      const read = await client.get({ key: b('t1'), consistency: Consistency.CONSISTENCY_AT_LEAST, after: [token] });
      assert.deepEqual([read.status, read.data.toString()], [ReadStatus.OK, 'v1']);
      // The read's token covers what the node had applied, the write included.
      assert.ok((decodeToken(read.token).offsets.get(0) ?? 0) >= (decodeToken(token).offsets.get(0) ?? 0));

      await client.set({ key: b('t2'), value: b('v2'), waitForApply: true });
      assert.equal((await client.get({ key: b('t2') })).data.toString(), 'v2');
    });

    test('a LATEST read sees every write acknowledged before it', async () => {
      for (let i = 0; i < 20; i++) {
        await client.set({ key: b('latest'), value: b(`${i}`) });
        const read = await client.get({ key: b('latest'), consistency: Consistency.CONSISTENCY_LATEST });
        assert.equal(read.data.toString(), `${i}`);
      }
    });

    test('a token the node cannot reach in time gives DEADLINE_EXCEEDED, never stale data', async () => {
      const { token } = await client.set({ key: b('future'), value: b('x') });
      const decoded = decodeToken(token);
      const ahead = encodeToken(decoded.logTag, new Map([[0, (decoded.offsets.get(0) ?? 0) + 1_000_000]]));
      const started = Date.now();
      await assert.rejects(
        client.get({ key: b('future'), consistency: Consistency.CONSISTENCY_AT_LEAST, after: [ahead] }, 500),
        (error) => codeOf(error) === status.DEADLINE_EXCEEDED,
      );
      assert.ok(Date.now() - started < 3000);
    });

    test('bad tokens: garbage is INVALID_ARGUMENT, a token of another log FAILED_PRECONDITION', async () => {
      await assert.rejects(
        client.get({ key: b('k'), consistency: Consistency.CONSISTENCY_AT_LEAST, after: [b('garbage')] }),
        (error) => codeOf(error) === status.INVALID_ARGUMENT,
      );
      const foreign = encodeToken(Buffer.alloc(8, 7), new Map([[0, 1]]));
      await assert.rejects(
        client.get({ key: b('k'), after: [foreign] }),
        (error) => codeOf(error) === status.FAILED_PRECONDITION,
      );
      await assert.rejects(
        client.get({ key: b('k'), consistency: Consistency.CONSISTENCY_AT_LEAST }),
        (error) => codeOf(error) === status.INVALID_ARGUMENT,
      );
    });
  });

  test('Delete removes a key with the same reply shape as Set', async () => {
    await client.set({ key: b('gone'), value: b('soon'), waitForApply: true });
    const reply = await client.delete({ key: b('gone') });
    assert.equal(reply.status, 0);
    const read = await client.get({ key: b('gone'), after: [reply.token] });
    assert.equal(read.status, ReadStatus.NOT_FOUND);
    // Deleting a missing key is not an error: the log just records that it is absent.
    await client.delete({ key: b('never-there') });
    await assert.rejects(client.delete({ key: Buffer.alloc(0) }), (e) => codeOf(e) === status.INVALID_ARGUMENT);
  });

  describe('Write (batched puts and deletes)', () => {
    test('publishes every mutation, reports each, and one merged token covers them all', async () => {
      await client.set({ key: b('w-del'), value: b('x'), waitForApply: true });
      const mutations = [
        ...Array.from({ length: 500 }, (_, i) => ({ key: b(`w-${i}`), value: b(`v${i}`), delete: false })),
        { key: b('w-del'), value: Buffer.alloc(0), delete: true },
        { key: b('w-empty'), value: Buffer.alloc(0), delete: false },
      ];
      const reply = await client.write({ mutations });
      assert.equal(reply.results.length, mutations.length);
      assert.ok(reply.results.every((r) => r.code === status.OK && r.token.length > 0));
      const read = await client.multiGet({
        keys: [b('w-0'), b('w-499'), b('w-del'), b('w-empty')],
        after: [reply.token],
      });
      assert.deepEqual(
        read.parts.map((p) => [p.status, p.data.toString()]),
        [
          [ReadStatus.OK, 'v0'],
          [ReadStatus.OK, 'v499'],
          [ReadStatus.NOT_FOUND, ''],
          [ReadStatus.OK, ''],
        ],
      );
    });

    test('one invalid mutation rejects the whole call and nothing is published', async () => {
      await assert.rejects(
        client.write({
          mutations: [
            { key: b('w-bad-ok'), value: b('x'), delete: false },
            { key: Buffer.alloc(0), value: b('x'), delete: false },
          ],
        }),
        (error) => codeOf(error) === status.INVALID_ARGUMENT && /mutations\[1\]\.key is empty/.test(String(error)),
      );
      const read = await client.get({ key: b('w-bad-ok'), consistency: Consistency.CONSISTENCY_LATEST });
      assert.equal(read.status, ReadStatus.NOT_FOUND);
      await assert.rejects(
        client.write({
          mutations: Array.from({ length: 2001 }, (_, i) => ({ key: b(`x${i}`), value: b(''), delete: false })),
        }),
        (error) => codeOf(error) === status.INVALID_ARGUMENT,
      );
    });
  });

  describe('Scan', () => {
    before(async () => {
      const mutations = Array.from({ length: 250 }, (_, i) => ({
        key: b(`scan/${String(i).padStart(3, '0')}`),
        value: b(`value-${i}`),
        delete: false,
      }));
      await client.write({ mutations, waitForApply: true });
      await client.set({ key: b('scan0'), value: b('outside the prefix'), waitForApply: true });
    });

    test('by prefix, page by page with continuation, keys in byte order', async () => {
      const keys: string[] = [];
      let continuation: Buffer = Buffer.alloc(0);
      let pages = 0;
      do {
        const page = await client.scan({ prefix: b('scan/'), limit: 100, continuation });
        pages++;
        for (const item of page.items) {
          keys.push(item.key.toString());
          assert.equal(item.value.toString(), `value-${Number(item.key.toString().slice(5))}`);
        }
        continuation = page.continuation;
      } while (continuation.length > 0);
      assert.equal(pages, 3);
      assert.deepEqual(
        keys,
        Array.from({ length: 250 }, (_, i) => `scan/${String(i).padStart(3, '0')}`),
      );
    });

    test('by [start, end) range, keys only', async () => {
      const page = await client.scan({ start: b('scan/010'), end: b('scan/015'), keysOnly: true });
      assert.deepEqual(
        page.items.map((i) => [i.key.toString(), i.value.length]),
        ['010', '011', '012', '013', '014'].map((n) => [`scan/${n}`, 0]),
      );
      assert.equal(page.continuation.length, 0);
    });

    test('bad ranges are INVALID_ARGUMENT', async () => {
      await assert.rejects(
        client.scan({ prefix: b('a'), start: b('b') }),
        (e) => codeOf(e) === status.INVALID_ARGUMENT,
      );
      await assert.rejects(client.scan({ start: b('z'), end: b('a') }), (e) => codeOf(e) === status.INVALID_ARGUMENT);
      await assert.rejects(client.scan({ limit: 5000 }), (e) => codeOf(e) === status.INVALID_ARGUMENT);
    });
  });

  describe('Watch', () => {
    test('streams puts and deletes under a prefix in log order, with progress when quiet', async () => {
      const watch = collect(client.watch({ prefix: b('watch/'), progressIntervalMs: 200 }));
      await eventually(() => watch.events.some((e) => e.kind === 2), 5000, 'a first progress event');
      await client.set({ key: b('watch/a'), value: b('1') });
      await client.set({ key: b('other'), value: b('not watched') });
      await client.delete({ key: b('watch/a') });
      await client.write({
        mutations: [
          { key: b('watch/b'), value: b('2'), delete: false },
          { key: b('watch/c'), value: b('3'), delete: false },
        ],
      });
      await eventually(() => changes(watch.events).length === 4, 5000, 'four changes');
      assert.deepEqual(changes(watch.events), [
        [0, 'watch/a', '1'],
        [1, 'watch/a', ''],
        [0, 'watch/b', '2'],
        [0, 'watch/c', '3'],
      ]);
      const progressAfter = watch.events.length;
      await eventually(() => watch.events.slice(progressAfter).some((e) => e.kind === 2), 5000, 'progress again');
      watch.stop();
    });

    test('resumes from the last token it got: missed changes are replayed, then live ones follow', async () => {
      const first = collect(client.watch({ key: b('resume') }));
      await client.set({ key: b('resume'), value: b('1') });
      await eventually(() => changes(first.events).length === 1, 5000, 'the first change');
      const last = first.events.at(-1);
      assert.ok(last);
      first.stop();

      await client.set({ key: b('resume'), value: b('2') });
      await client.set({ key: b('resume'), value: b('3'), waitForApply: true });
      const second = collect(client.watch({ key: b('resume'), after: last.token }));
      await eventually(() => changes(second.events).length === 2, 5000, 'the missed changes');
      await client.set({ key: b('resume'), value: b('4') });
      await eventually(() => changes(second.events).length === 3, 5000, 'the live change');
      assert.deepEqual(
        changes(second.events).map((c) => c[2]),
        ['2', '3', '4'],
      );
      second.stop();
    });

    test('a watcher that does not read is cut off with RESOURCE_EXHAUSTED instead of buffering without bound', async () => {
      // Its own connection: a paused stream stops HTTP/2 flow control for everything on its connection.
      const watcher = new Kvs2Client(server.address, { ownConnection: true });
      const stream = watcher.watch({ prefix: b('flood/') });
      const subscribed = once(stream, 'metadata');
      const watch = collect(stream);
      await subscribed;
      stream.pause();
      const value = Buffer.alloc(2048, 1);
      for (let round = 0; round < 15; round++) {
        await client.write({
          mutations: Array.from({ length: 1000 }, (_, i) => ({ key: b(`flood/${round}-${i}`), value, delete: false })),
        });
      }
      stream.resume();
      const ended = await watch.ended;
      assert.notEqual(ended, 'end');
      assert.equal((ended as { code: number }).code, status.RESOURCE_EXHAUSTED);
      assert.match((ended as { details: string }).details, /resume with the token/);
      assert.ok(watch.events.length < 15_000);
      watcher.close();
    });

    test('a token older than the log keeps is OUT_OF_RANGE; key and prefix together are INVALID_ARGUMENT', async () => {
      const { token } = await client.set({ key: b('old'), value: b('x') });
      const decoded = decodeToken(token);
      const ancient = encodeToken(decoded.logTag, new Map([[0, 0]]));
      // 15,000+ writes so far: the embedded log keeps the last 10,000 applied records.
      const watch = collect(client.watch({ after: ancient }));
      const ended = await watch.ended;
      assert.equal((ended as { code: number }).code, status.OUT_OF_RANGE);
      const both = collect(client.watch({ key: b('a'), prefix: b('a') }));
      assert.equal(((await both.ended) as { code: number }).code, status.INVALID_ARGUMENT);
    });
  });
});
