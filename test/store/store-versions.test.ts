import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { open } from 'lmdb';
import { LmdbStore } from '../../src/store/lmdb-store.js';
import { ReadOnlyStore } from '../../src/store/read-only-store.js';
import { VERSIONS_UPGRADE_KEY } from '../../src/store/saved-progress.js';
import type { ScanRange } from '../../src/store/store.js';
import { STORE_FORMAT_KEY } from '../../src/store/store-format.js';
import { writeFormatOneStore } from '../support/format-one-store.js';
import { tempDir } from '../support/paths.js';

const b = (text: string): Buffer => Buffer.from(text);
const WHOLE: ScanRange = {
  start: Buffer.alloc(0),
  startExclusive: false,
  end: undefined,
  limit: 100,
  maxBytes: Number.POSITIVE_INFINITY,
  keysOnly: false,
};

async function formatOf(path: string): Promise<unknown> {
  const env = open({ path, maxDbs: 4, readOnly: true });
  try {
    return env.openDB<unknown, string>({ name: 'meta' }).get(STORE_FORMAT_KEY);
  } finally {
    await env.close();
  }
}

/** What get() answers for each key: [value, version], value null when absent. */
function readAll(store: LmdbStore | ReadOnlyStore, keys: readonly string[]): Array<[string | null, number]> {
  return keys.map((key) => {
    const value = store.get(b(key));
    return [value === undefined ? null : value.toString(), store.lastVersion];
  });
}

describe('versions in the store (format 2)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir('store-versions');
  });
  after(async () => {
    await dir.remove();
  });

  test('get and scan return each key with the version its last write brought; a miss has version 0', async () => {
    const path = `${dir.path}/apply`;
    let store = LmdbStore.open(path);
    await store.apply(
      [
        { key: b('a'), value: b('1'), version: 1 },
        { key: b('b'), value: b('2'), version: 2 },
        { key: b('empty'), value: Buffer.alloc(0), version: 3 },
        { key: b('a'), value: b('1 again'), version: 4 },
      ],
      new Map([[0, 4]]),
      'log-1',
    );
    assert.deepEqual(readAll(store, ['a', 'b', 'empty', 'none']), [
      ['1 again', 4],
      ['2', 2],
      ['', 3],
      [null, 0],
    ]);
    // A delete makes the key absent; a re-create gets the new write's, higher, version.
    await store.apply([{ key: b('b'), value: null, version: 5 }], new Map([[0, 5]]), 'log-1');
    assert.deepEqual(readAll(store, ['b']), [[null, 0]]);
    await store.apply([{ key: b('b'), value: b('back'), version: 9 }], new Map([[0, 9]]), 'log-1');
    await store.close();

    store = LmdbStore.open(path);
    try {
      assert.deepEqual(readAll(store, ['a', 'b']), [
        ['1 again', 4],
        ['back', 9],
      ]);
      const page = store.scan(WHOLE);
      assert.deepEqual(
        page.items.map((item) => [item.key.toString(), item.value?.toString(), item.version]),
        [
          ['a', '1 again', 4],
          ['b', 'back', 9],
          ['empty', '', 3],
        ],
      );
      const keysOnly = store.scan({ ...WHOLE, keysOnly: true });
      assert.deepEqual(
        keysOnly.items.map((item) => [item.key.toString(), item.value, item.version]),
        [
          ['a', undefined, 4],
          ['b', undefined, 9],
          ['empty', undefined, 3],
        ],
      );
      // Large values (past lmdb-js's reusable read buffer) keep their version and bytes too.
      const large = Buffer.alloc(3 << 20, 'L');
      await store.apply(
        [{ key: b('large'), value: large, version: 2 ** 40 + 7 }],
        new Map([[0, 2 ** 40 + 7]]),
        'log-1',
      );
      assert.deepEqual(store.get(b('large')), large);
      assert.equal(store.lastVersion, 2 ** 40 + 7);
      using snapshot = store.snapshot();
      assert.equal(snapshot.storeFormat, 2);
      assert.deepEqual(
        [...snapshot.entries()].map((entry) => [Buffer.from(entry.key).toString(), entry.value.length, entry.version]),
        [
          ['a', 7, 4],
          ['b', 4, 9],
          ['empty', 0, 3],
          ['large', 3 << 20, 2 ** 40 + 7],
        ],
      );
    } finally {
      await store.close();
    }
  });

  test('a format-1 store is refused for reads and writes until upgraded; upgraded, every key has the applied offset as version', async () => {
    const path = `${dir.path}/format-one`;
    const keys = Array.from({ length: 25_000 }, (_, i) => `key-${String(i).padStart(6, '0')}`);
    await writeFormatOneStore(
      path,
      keys.map((key) => [key, `value of ${key}`]),
      { appliedOffsets: [[0, 31_000]], format: 1 },
    );
    let store = LmdbStore.open(path);
    try {
      assert.equal(store.unversioned, true);
      assert.throws(() => store.get(b('key-000001')), { code: 'STORE_UNAVAILABLE' });
      assert.throws(() => store.scan(WHOLE), { code: 'STORE_UNAVAILABLE' });
      assert.throws(() => store.snapshot(), { code: 'STORE_UNAVAILABLE' });
      await assert.rejects(store.apply([{ key: b('x'), value: b('y'), version: 1 }], new Map([[0, 1]]), 'log-1'), {
        code: 'STORE_UNAVAILABLE',
      });

      // Several upgrade batches (10,000 values each).
      assert.deepEqual(store.upgradeUnversioned('assign-applied-offset'), {
        upgrade: 'assign-applied-offset',
        keys: 25_000,
        version: 31_000,
      });
      assert.equal(store.unversioned, false);
      assert.deepEqual(readAll(store, ['key-000000', 'key-012345', 'key-024999']), [
        ['value of key-000000', 31_000],
        ['value of key-012345', 31_000],
        ['value of key-024999', 31_000],
      ]);
      assert.equal(store.stats().keys, 25_000);
      // The next write gets a higher version than the stand-in.
      await store.apply([{ key: b('key-000000'), value: b('new'), version: 31_001 }], new Map([[0, 31_001]]), 'log-1');
    } finally {
      await store.close();
    }
    assert.equal(await formatOf(path), 2);
    store = LmdbStore.open(path);
    try {
      assert.equal(store.unversioned, false);
      assert.deepEqual(readAll(store, ['key-000000', 'key-000001']), [
        ['new', 31_001],
        ['value of key-000001', 31_000],
      ]);
      assert.deepEqual(store.progress().appliedOffsets, new Map([[0, 31_001]]));
    } finally {
      await store.close();
    }
  });

  test('an upgrade cut short (the process died between batches) resumes after its last batch, never versioning a value twice', async () => {
    const path = `${dir.path}/format-one-resumed`;
    const keys = Array.from({ length: 15_000 }, (_, i) => `key-${String(i).padStart(6, '0')}`);
    await writeFormatOneStore(
      path,
      keys.map((key) => [key, `value of ${key}`]),
      { appliedOffsets: [[0, 20_000]], format: 1 },
    );
    // The state the first batch's transaction leaves: its values versioned, the marker on its last key,
    // the format still 1. Written with lmdb-js directly, as the upgrade writes it.
    const env = open({ path, maxDbs: 4, mapSize: 64 * 1024 ** 3 });
    try {
      const kv = env.openDB<Buffer, Buffer>({ name: 'kv', keyEncoding: 'binary', encoding: 'binary' });
      const meta = env.openDB<unknown, string>({ name: 'meta' });
      await env.transaction(() => {
        for (const key of keys.slice(0, 10_000)) {
          const stored = Buffer.alloc(8 + `value of ${key}`.length);
          stored.writeUInt32BE(0, 0);
          stored.writeUInt32BE(20_000, 4);
          stored.write(`value of ${key}`, 8);
          kv.put(b(key), stored);
        }
        meta.put(VERSIONS_UPGRADE_KEY, b(keys[9_999] as string).toString('hex'));
      });
    } finally {
      await env.close();
    }
    const store = LmdbStore.open(path);
    try {
      assert.equal(store.unversioned, true);
      store.upgradeUnversioned('assign-applied-offset');
      assert.deepEqual(readAll(store, ['key-000000', 'key-009999', 'key-010000', 'key-014999']), [
        ['value of key-000000', 20_000],
        ['value of key-009999', 20_000],
        ['value of key-010000', 20_000],
        ['value of key-014999', 20_000],
      ]);
    } finally {
      await store.close();
    }
    assert.equal(await formatOf(path), 2);
  });

  test('a format-1 store upgraded by clearing holds nothing, not even progress: it is rebuilt from the log', async () => {
    const path = `${dir.path}/format-one-cleared`;
    await writeFormatOneStore(path, [['k', 'v']], {
      appliedOffsets: [
        [0, 5],
        [3, 8],
      ],
      logIdentity: 'kafka:topic',
      format: 1,
    });
    const store = LmdbStore.open(path);
    try {
      assert.deepEqual(store.upgradeUnversioned('clear'), { upgrade: 'clear', keys: 1, version: null });
      assert.deepEqual(store.progress(), { logIdentity: null, appliedOffsets: new Map(), caughtUpAt: null });
      assert.equal(store.stats().keys, 0);
      assert.equal(store.get(b('k')), undefined);
    } finally {
      await store.close();
    }
    assert.equal(await formatOf(path), 2);
  });

  test('readers in other threads or processes treat a format-1 store as not ready until its writer upgraded it', async () => {
    const path = `${dir.path}/readers`;
    await writeFormatOneStore(path, [['k', 'v']], { appliedOffsets: [[0, 4]], format: 1 });
    assert.throws(
      () => ReadOnlyStore.open(path),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, 'STORE_UNAVAILABLE');
        assert.match(error.message, /store format 1 \(no versions\): its node upgrades it as it starts/);
        return true;
      },
    );
    assert.throws(() => LmdbStore.openReader(path), { code: 'STORE_UNAVAILABLE' });
    assert.equal(await formatOf(path), 1, 'readers write nothing');

    const writer = LmdbStore.open(path);
    try {
      writer.upgradeUnversioned('assign-applied-offset');
    } finally {
      await writer.close();
    }
    const reader = ReadOnlyStore.open(path);
    try {
      assert.deepEqual(readAll(reader, ['k', 'none']), [
        ['v', 4],
        [null, 0],
      ]);
      assert.deepEqual(
        reader.scan({ ...WHOLE, keysOnly: true }).items.map((item) => item.version),
        [4],
      );
    } finally {
      await reader.close();
    }
  });
});
