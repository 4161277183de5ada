import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { open } from 'lmdb';
import { Kvs2Client } from '../../src/client/index.js';
import { isKvs2Error } from '../../src/errors.js';
import { type Kvs2ColocatedReader, openColocatedReader } from '../../src/replica-lib/index.js';
import { decodeToken, encodeToken, logTagOf } from '../../src/service/consistency-token.js';
import { LmdbStore } from '../../src/store/lmdb-store.js';
import { LOADING_KEY } from '../../src/store/saved-progress.js';
import { STORE_FORMAT_KEY } from '../../src/store/store-format.js';
import { type CliResult, runKvs2 } from '../support/cli-process.js';
import { kafkaBrokers, needsKafka } from '../support/kafka-env.js';
import { REPO_ROOT, tempDir } from '../support/paths.js';
import { ServerProcess } from '../support/server-process.js';

const b = (text: string): Buffer => Buffer.from(text);
const text = (value: Buffer | undefined): string | undefined => value?.toString();
/** Generous: nothing here is timed, a deadline only keeps a broken wait from hanging the suite. */
const WAIT = (): AbortSignal => AbortSignal.timeout(30_000);

/** The error code an action fails with; fails the test if it does not fail with a Kvs2Error. */
async function failureOf(action: Promise<unknown> | (() => unknown)): Promise<{ code: string; message: string }> {
  try {
    await (typeof action === 'function' ? action() : action);
  } catch (error) {
    assert.ok(isKvs2Error(error), `not a Kvs2Error: ${String(error)}`);
    return { code: error.code, message: error.message };
  }
  return assert.fail('it did not fail');
}

/** Every file under `dir` with what says whether it was written: size, mtime, inode. */
function filesUnder(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (at: string): void => {
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      const path = join(at, entry.name);
      if (entry.isDirectory()) walk(path);
      const stats = statSync(path, { bigint: true });
      files.set(relative(dir, path), `${stats.size}:${stats.mtimeNs}:${stats.ino}`);
    }
  };
  walk(dir);
  return files;
}

/**
 * The files, less lock.mdb's mtime: LMDB's lock file is its reader table, shared memory in which every
 * process reading the store takes a slot; it must stay the same file, holding what it held.
 */
function writtenState(dir: string): Map<string, string> {
  const files = filesUnder(dir);
  for (const [path, state] of files) {
    if (path.endsWith('lock.mdb')) {
      const [size, , ino] = state.split(':');
      files.set(path, `${size}:${ino}`);
    }
  }
  return files;
}

function ok(result: CliResult): string {
  assert.deepEqual([result.code, result.stderr], [0, ''], `stdout: ${result.stdout.toString()}`);
  return result.stdout.toString();
}

/** A token naming `more` records after the one `token` names, on its partition: a write not made yet. */
function laterToken(token: Buffer, more: number): Buffer {
  const decoded = decodeToken(token);
  const [[partition, offset]] = [...decoded.offsets] as [[number, number]];
  return encodeToken(decoded.logTag, new Map([[partition, offset + more]]));
}

/**
 * Writes (or removes) one entry of a store's meta database from another process, as a node would: in this
 * process lmdb-js would share the reader's read-only environment.
 */
function writeMetaElsewhere(storeDir: string, key: string, value: number | null): void {
  const script = `
    const { open } = await import('lmdb');
    const env = open({ path: ${JSON.stringify(storeDir)}, maxDbs: 4, mapSize: 64 * 1024 ** 3 });
    const meta = env.openDB({ name: 'meta' });
    ${value === null ? `await meta.remove(${JSON.stringify(key)});` : `await meta.put(${JSON.stringify(key)}, ${value});`}
    await env.close();`;
  const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
  });
  assert.equal(result.status, 0, result.stderr);
}

/** The version a write gives its key: its log position, the offset + 1 its token names. */
const positionOf = (token: Buffer): number => [...decodeToken(token).offsets.values()][0] as number;

describe('the co-located reader beside a node on the embedded log', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir('colocated');
  });
  after(async () => {
    await dir?.remove();
  });

  test("reads what the node's client wrote; getAfter waits until the node applied the token; status names its positions", async () => {
    const dataDir = join(dir.path, 'reads');
    const node = await ServerProcess.start({ dataDir });
    const client = new Kvs2Client(node.address);
    let reader: Kvs2ColocatedReader | undefined;
    try {
      await node.waitUntilCaughtUp();
      const first = await client.set({ key: b('user/1'), value: b('one') });
      reader = await openColocatedReader({ dataDir });
      assert.equal(text(await reader.getAfter(b('user/1'), first.token, WAIT())), 'one');
      const second = await client.set({ key: b('user/2'), value: b('two') });
      const { token } = await client.set({ key: b('other'), value: b('x') });
      assert.deepEqual(
        (await reader.getManyAfter([b('user/1'), b('nope'), b('user/2')], [first.token, token])).map(text),
        ['one', undefined, 'two'],
      );
      // Synchronous now, in the same process: no RPC, no promise.
      assert.equal(text(reader.get(b('other'))), 'x');
      assert.deepEqual(
        reader.scan({ prefix: b('user/') }).map((e) => [e.key.toString(), e.value.toString(), e.version]),
        [
          ['user/1', 'one', positionOf(first.token)],
          ['user/2', 'two', positionOf(second.token)],
        ],
      );
      // Versions as the node answers them: its write's log position.
      const entry = reader.getEntry(b('other'));
      assert.deepEqual([entry?.value.toString(), entry?.version], ['x', positionOf(token)]);
      // With the write's token: a read without one may come before the node applied it (reads are local).
      assert.equal(entry?.version, (await client.get({ key: b('other'), after: [token] })).version);
      assert.equal(reader.getEntry(b('nope')), undefined);
      assert.deepEqual(
        reader.scan({ start: b('other'), end: b('user/2') }).map((e) => e.key.toString()),
        ['other', 'user/1'],
      );

      // A token for writes not made yet: the read waits, through a write that does not reach it, and
      // answers once the node has applied the writes it names.
      const later = laterToken(token, 3);
      let settled = false;
      const waiting = reader.getAfter(b('wait/k'), later, WAIT()).finally(() => {
        settled = true;
      });
      const v1 = await client.set({ key: b('wait/k'), value: b('v1') });
      assert.equal(text(await reader.getAfter(b('wait/k'), v1.token, WAIT())), 'v1');
      assert.equal(settled, false, 'answered before the node applied what the token names');
      await client.set({ key: b('wait/k'), value: b('v2') });
      const v3 = await client.set({ key: b('wait/k'), value: b('v3') });
      assert.equal(text(await waiting), 'v3');

      const status = reader.status();
      assert.ok(status.logIdentity !== null);
      assert.deepEqual(logTagOf(status.logIdentity), decodeToken(v3.token).logTag);
      const [[partition, offset]] = [...decodeToken(v3.token).offsets] as [[number, number]];
      assert.ok(
        status.partitions.some((p) => p.partition === partition && p.appliedOffset >= offset),
        JSON.stringify(status.partitions),
      );
      assert.deepEqual([status.keys, status.reopened, status.unavailable], [4, 0, null]);

      // Tokens it cannot wait for, and a deadline.
      const foreign = encodeToken(logTagOf('another log'), new Map([[0, 1]]));
      assert.equal((await failureOf(reader.getAfter(b('k'), foreign))).code, 'TOKEN_FROM_OTHER_LOG');
      assert.equal((await failureOf(reader.getAfter(b('k'), b('not a token')))).code, 'INVALID_ARGUMENT');
      assert.equal(
        (await failureOf(reader.getAfter(b('k'), laterToken(token, 1000), AbortSignal.timeout(50)))).code,
        'DEADLINE_EXCEEDED',
      );
      assert.equal((await failureOf(() => reader?.get(b('')))).code, 'INVALID_ARGUMENT');
    } finally {
      await reader?.close();
      client.close();
      await node.stop();
    }
    // close() is idempotent, and a closed reader says so.
    assert.ok(reader !== undefined);
    await reader.close();
    assert.equal((await failureOf(() => reader?.get(b('user/1')))).code, 'SHUTTING_DOWN');
    const anyToken = encodeToken(logTagOf('any'), new Map([[0, 1]]));
    assert.equal((await failureOf(reader.getAfter(b('user/1'), anyToken))).code, 'SHUTTING_DOWN');
  });

  test('keeps answering while the node restarts, and a wait begun while it was down ends once it applies', async () => {
    const dataDir = join(dir.path, 'restart');
    let node = await ServerProcess.start({ dataDir });
    let client = new Kvs2Client(node.address);
    const reader = await openColocatedReader({ dataDir });
    try {
      await node.waitUntilCaughtUp();
      const { token } = await client.set({ key: b('k'), value: b('before') });
      assert.equal(text(await reader.getAfter(b('k'), token, WAIT())), 'before');
      client.close();
      assert.equal((await node.stop()).code, 0);

      // The node is gone: what it applied is still there to read.
      assert.equal(text(reader.get(b('k'))), 'before');
      let settled = false;
      const waiting = reader.getAfter(b('k'), laterToken(token, 1), WAIT()).finally(() => {
        settled = true;
      });
      assert.equal(text(reader.get(b('k'))), 'before');
      assert.equal(settled, false);

      node = await ServerProcess.start({ dataDir });
      client = new Kvs2Client(node.address);
      await node.waitUntilCaughtUp();
      const again = await client.set({ key: b('k'), value: b('after') });
      assert.equal(text(await waiting), 'after');
      assert.equal(text(await reader.getAfter(b('k'), again.token, WAIT())), 'after');
      assert.deepEqual([reader.status().reopened, reader.status().unavailable], [0, null]);

      // Killed outright: the same.
      await node.kill9();
      assert.equal(text(reader.get(b('k'))), 'after');
      node = await ServerProcess.start({ dataDir });
      client.close();
      client = new Kvs2Client(node.address);
      await node.waitUntilCaughtUp();
      const last = await client.set({ key: b('k'), value: b('after a kill') });
      assert.equal(text(await reader.getAfter(b('k'), last.token, WAIT())), 'after a kill');
    } finally {
      await reader.close();
      client.close();
      await node.stop();
    }
  });

  test('kvs2 compact refuses the data dir while a reader has it open, naming the process; after close it compacts', async () => {
    const dataDir = join(dir.path, 'compact');
    const node = await ServerProcess.start({ dataDir });
    const client = new Kvs2Client(node.address);
    const reader = await openColocatedReader({ dataDir });
    let token: Buffer;
    try {
      await node.waitUntilCaughtUp();
      ({ token } = await client.set({ key: b('k'), value: b('v') }));
      assert.equal(text(await reader.getAfter(b('k'), token, WAIT())), 'v');
    } finally {
      client.close();
      assert.equal((await node.stop()).code, 0);
    }
    try {
      const refused = await runKvs2(['compact', '--data-dir', dataDir]);
      assert.equal(refused.code, 4, refused.stderr);
      assert.match(refused.stderr, new RegExp(`^kvs2 compact: DATA_DIR_IN_USE: .*process ${process.pid}\\b`));
      assert.equal(text(reader.get(b('k'))), 'v');
    } finally {
      await reader.close();
    }
    ok(await runKvs2(['compact', '--data-dir', dataDir]));
    // A compacted store no node has opened yet has no lock file: the reader refuses rather than create one.
    const before = filesUnder(dataDir);
    const unopened = await failureOf(openColocatedReader({ dataDir }));
    assert.equal(unopened.code, 'STORE_UNAVAILABLE');
    assert.match(unopened.message, /no node has opened the store/);
    assert.deepEqual(filesUnder(dataDir), before);
  });

  test('a restored data dir swapped in under the reader: reads fail (never the old file) until a node opens it, then answer from it', async () => {
    const dataDir = join(dir.path, 'swap');
    const restored = join(dir.path, 'swap-restored');
    const backup = join(dir.path, 'swap.kvs2snap');
    let node = await ServerProcess.start({ dataDir });
    let client = new Kvs2Client(node.address);
    const reader = await openColocatedReader({ dataDir });
    try {
      await node.waitUntilCaughtUp();
      await client.set({ key: b('k'), value: b('in the backup') });
      ok(await runKvs2(['snapshot', 'save', backup, '--endpoint', node.address]));
      const { token } = await client.set({ key: b('k'), value: b('after the backup') });
      assert.equal(text(await reader.getAfter(b('k'), token, WAIT())), 'after the backup');
      client.close();
      assert.equal((await node.stop()).code, 0);

      ok(await runKvs2(['snapshot', 'restore', backup, '--data-dir', restored]));
      renameSync(dataDir, `${dataDir}-old`);
      renameSync(restored, dataDir);
      const swappedIn = filesUnder(dataDir);
      const status = reader.status();
      assert.equal(status.unavailable?.code, 'STORE_UNAVAILABLE');
      assert.match(status.unavailable?.message ?? '', /was replaced or removed under this reader/);
      assert.equal((await failureOf(() => reader.get(b('k')))).code, 'STORE_UNAVAILABLE');
      assert.equal((await failureOf(() => reader.scan({ prefix: b('') }))).code, 'STORE_UNAVAILABLE');
      // Looking again creates nothing (no lock file) until a node opens the new store.
      assert.equal((await failureOf(() => reader.getMany([b('k')]))).code, 'STORE_UNAVAILABLE');
      reader.status();
      assert.deepEqual(filesUnder(dataDir), swappedIn);

      node = await ServerProcess.start({ dataDir });
      client = new Kvs2Client(node.address);
      await node.waitUntilCaughtUp();
      const next = await client.set({ key: b('k2'), value: b('on the restored store') });
      assert.equal(text(await reader.getAfter(b('k2'), next.token, WAIT())), 'on the restored store');
      assert.equal(text(reader.get(b('k'))), 'in the backup');
      assert.deepEqual([reader.status().reopened, reader.status().unavailable], [1, null]);
    } finally {
      await reader.close();
      client.close();
      await node.stop();
    }
  });

  test('a data dir wiped under the reader and a new node started on it: a wait for the old log ends with LOG_RECREATED, reads answer from the new store', async () => {
    const dataDir = join(dir.path, 'wipe');
    let node = await ServerProcess.start({ dataDir });
    let client = new Kvs2Client(node.address);
    const reader = await openColocatedReader({ dataDir });
    try {
      await node.waitUntilCaughtUp();
      const { token } = await client.set({ key: b('k'), value: b('old log') });
      assert.equal(text(await reader.getAfter(b('k'), token, WAIT())), 'old log');
      const waiting = failureOf(reader.getAfter(b('k'), laterToken(token, 100), WAIT()));
      client.close();
      assert.equal((await node.stop()).code, 0);
      rmSync(dataDir, { recursive: true });

      node = await ServerProcess.start({ dataDir });
      client = new Kvs2Client(node.address);
      await node.waitUntilCaughtUp();
      const fresh = await client.set({ key: b('k'), value: b('new log') });
      assert.equal((await waiting).code, 'LOG_RECREATED');
      assert.equal((await failureOf(reader.getAfter(b('k'), token))).code, 'TOKEN_FROM_OTHER_LOG');
      assert.equal(text(await reader.getAfter(b('k'), fresh.token, WAIT())), 'new log');
      assert.equal(reader.status().reopened, 1);
    } finally {
      await reader.close();
      client.close();
      await node.stop();
    }
  });

  test("writes nothing in the node's data dir: the files, their sizes and times are as they were", async () => {
    const dataDir = join(dir.path, 'untouched');
    const node = await ServerProcess.start({ dataDir });
    const client = new Kvs2Client(node.address);
    let token: Buffer;
    try {
      await node.waitUntilCaughtUp();
      ({ token } = await client.set({ key: b('k'), value: b('v') }));
      await client.get({ key: b('k'), after: [token] });
    } finally {
      client.close();
      assert.equal((await node.stop()).code, 0);
    }
    const before = writtenState(dataDir);
    const reader = await openColocatedReader({ dataDir });
    try {
      assert.equal(text(await reader.getAfter(b('k'), token, WAIT())), 'v');
      assert.equal(reader.scan({ prefix: b('') }).length, 1);
      assert.equal(reader.status().keys, 1);
      assert.equal(
        (await failureOf(reader.getAfter(b('k'), laterToken(token, 1), AbortSignal.timeout(100)))).code,
        'DEADLINE_EXCEEDED',
      );
    } finally {
      await reader.close();
    }
    assert.deepEqual(writtenState(dataDir), before);
  });

  test('a store a node starts loading a snapshot into, or moves to a newer format, in place: reads fail until it is readable again', async () => {
    const dataDir = join(dir.path, 'in-place');
    const storeDir = join(dataDir, 'store');
    const store = LmdbStore.open(storeDir);
    await (await store.apply([{ key: b('k'), value: b('v'), version: 1 }], new Map([[0, 1]]), 'log-1')).flushed;
    await store.close();
    const reader = await openColocatedReader({ dataDir });
    try {
      assert.equal(text(reader.get(b('k'))), 'v');
      writeMetaElsewhere(storeDir, LOADING_KEY, 1);
      assert.equal(reader.status().unavailable?.code, 'STORE_UNAVAILABLE');
      const loading = await failureOf(() => reader.get(b('k')));
      assert.deepEqual([loading.code, /loading a peer's snapshot/.test(loading.message)], ['STORE_UNAVAILABLE', true]);
      writeMetaElsewhere(storeDir, LOADING_KEY, null);
      assert.equal(reader.status().unavailable, null);
      assert.equal(text(reader.get(b('k'))), 'v');

      writeMetaElsewhere(storeDir, STORE_FORMAT_KEY, 3);
      assert.equal(reader.status().unavailable?.code, 'DATA_FORMAT_UNSUPPORTED');
      assert.equal((await failureOf(() => reader.get(b('k')))).code, 'DATA_FORMAT_UNSUPPORTED');
      assert.equal(reader.status().reopened, 0);
    } finally {
      await reader.close();
    }
  });

  test('refuses, creating nothing: no data dir, one without a store, a store mid-load, a store in an unknown format', async () => {
    const missing = join(dir.path, 'missing');
    const noDir = await failureOf(openColocatedReader({ dataDir: missing }));
    assert.equal(noDir.code, 'STORE_UNAVAILABLE');
    assert.match(noDir.message, /does not exist/);
    assert.equal(existsSync(missing), false);

    const empty = join(dir.path, 'empty');
    mkdirSync(empty);
    const noStore = await failureOf(openColocatedReader({ dataDir: empty }));
    assert.deepEqual([noStore.code, /no store\/data\.mdb/.test(noStore.message)], ['STORE_UNAVAILABLE', true]);
    assert.deepEqual(readdirSync(empty), []);

    // A node that died loading a peer's snapshot: the marker is there (a node clears it as it opens).
    const loading = join(dir.path, 'loading');
    const store = LmdbStore.open(join(loading, 'store'));
    store.beginLoad();
    store.appendLoaded([{ key: b('a'), value: b('1'), version: 1 }], undefined);
    await store.close();
    const loadingBefore = writtenState(loading);
    const midLoad = await failureOf(openColocatedReader({ dataDir: loading }));
    assert.deepEqual(
      [midLoad.code, /being loaded from a peer's snapshot/.test(midLoad.message)],
      ['STORE_UNAVAILABLE', true],
    );
    assert.deepEqual(writtenState(loading), loadingBefore);

    const newer = join(dir.path, 'newer');
    await LmdbStore.open(join(newer, 'store')).close();
    const env = open({ path: join(newer, 'store'), maxDbs: 4 });
    await env.openDB<unknown, string>({ name: 'meta' }).put(STORE_FORMAT_KEY, 3);
    await env.close();
    const unknownFormat = await failureOf(openColocatedReader({ dataDir: newer }));
    assert.deepEqual(
      [unknownFormat.code, /format version 3/.test(unknownFormat.message)],
      ['DATA_FORMAT_UNSUPPORTED', true],
    );

    assert.equal((await failureOf(openColocatedReader({ dataDir: '' }))).code, 'INVALID_ARGUMENT');
  });
});

/** Two nodes on one topic; the reader reads one node's store and honours tokens from writes through either. */
describe('the co-located reader beside nodes on Kafka', needsKafka(), () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let nodes: ServerProcess[] = [];
  let clients: Kvs2Client[] = [];
  before(async () => {
    const brokers = kafkaBrokers();
    const topic = `kvs2-test-${randomUUID()}`;
    dir = await tempDir('colocated-kafka');
    for (const name of ['a', 'b']) {
      const node = await ServerProcess.start({
        dataDir: join(dir.path, name),
        args: ['--kafka-brokers', brokers.join(','), '--topic', topic, '--partitions', '3'],
      });
      nodes.push(node);
      await node.waitUntilCaughtUp(60_000);
    }
    clients = nodes.map((node) => new Kvs2Client(node.address));
  });
  after(async () => {
    for (const client of clients) client.close();
    await Promise.all(nodes.map((node) => node.stop()));
    nodes = [];
    await dir?.remove();
  });

  test("tokens from writes through the reader's node and through another node: getAfter waits for the node to apply them", async () => {
    const [a, b2] = clients as [Kvs2Client, Kvs2Client];
    const reader = await openColocatedReader({ dataDir: join(dir.path, 'a') });
    try {
      const tokens: Buffer[] = [];
      const keys: Buffer[] = [];
      for (let i = 0; i < 12; i++) {
        const key = b(`key/${i}`);
        keys.push(key);
        tokens.push((await (i % 2 === 0 ? a : b2).set({ key, value: b(`value ${i}`) })).token);
      }
      const partitions = new Set(tokens.flatMap((token) => [...decodeToken(token).offsets.keys()]));
      assert.ok(partitions.size > 1, 'the writes span partitions');
      const values = await reader.getManyAfter(keys, tokens, WAIT());
      assert.deepEqual(
        values.map(text),
        keys.map((_, i) => `value ${i}`),
      );
      // A write through the other node alone: the reader's node applies it from the topic.
      const { token } = await b2.set({ key: b('from b'), value: b('seen by a') });
      assert.equal(text(await reader.getAfter(b('from b'), token, WAIT())), 'seen by a');
      const status = reader.status();
      assert.deepEqual(logTagOf(status.logIdentity ?? ''), decodeToken(token).logTag);
      assert.ok(status.partitions.length >= partitions.size, JSON.stringify(status.partitions));
    } finally {
      await reader.close();
    }
  });
});
