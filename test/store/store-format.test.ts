import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { open } from 'lmdb';
import { isKvs2Error } from '../../src/errors.js';
import { LmdbStore } from '../../src/store/lmdb-store.js';
import { STORE_FORMAT_KEY, STORE_FORMAT_VERSION } from '../../src/store/store-format.js';
import { KVS2_VERSION } from '../../src/version.js';
import { writeFormatOneStore } from '../support/format-one-store.js';
import { tempDir } from '../support/paths.js';

/** The store's format entry as the files hold it, read (and optionally changed) with lmdb-js directly. */
async function formatEntry(path: string, change?: { set: unknown } | { remove: true }): Promise<unknown> {
  const env = open({ path, maxDbs: 4 });
  try {
    const meta = env.openDB<unknown, string>({ name: 'meta' });
    if (change !== undefined) {
      if ('remove' in change) await meta.remove(STORE_FORMAT_KEY);
      else await meta.put(STORE_FORMAT_KEY, change.set);
    }
    return meta.get(STORE_FORMAT_KEY);
  } finally {
    await env.close();
  }
}

describe('the store format version', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir('store-format');
  });
  after(async () => {
    await dir.remove();
  });

  test('a new store records the format version it is written in', async () => {
    const path = `${dir.path}/new`;
    await LmdbStore.open(path).close();
    assert.equal(STORE_FORMAT_VERSION, 2);
    assert.equal(await formatEntry(path), 2);
  });

  test('a store written before format versions were recorded is adopted as format 1 (no versions)', async () => {
    const path = `${dir.path}/unversioned`;
    await writeFormatOneStore(path, [['k', 'v']], { appliedOffsets: [[0, 1]], format: undefined });

    const store = LmdbStore.open(path);
    try {
      assert.equal(store.unversioned, true);
      assert.deepEqual(store.progress().appliedOffsets, new Map([[0, 1]]));
      assert.equal(store.progress().logIdentity, 'log-1');
      store.upgradeUnversioned('assign-applied-offset');
      assert.deepEqual(store.get(Buffer.from('k')), Buffer.from('v'));
    } finally {
      await store.close();
    }
    assert.equal(await formatEntry(path), 2);
  });

  test('a new store without a format entry yet is written in the current format, not taken for format 1', async () => {
    const path = `${dir.path}/empty-unmarked`;
    await LmdbStore.open(path).close();
    await formatEntry(path, { remove: true });
    const store = LmdbStore.open(path);
    assert.equal(store.unversioned, false);
    await store.close();
    assert.equal(await formatEntry(path), 2);
  });

  test('clearing the store for a rebuild keeps its format version', async () => {
    const path = `${dir.path}/cleared`;
    const store = LmdbStore.open(path);
    await store.apply([{ key: Buffer.from('k'), value: Buffer.from('v'), version: 1 }], new Map([[0, 1]]), 'log-1');
    await store.clear();
    await store.close();
    assert.equal(await formatEntry(path), 2);
  });

  for (const [what, written, named] of [
    ['a newer format version', 3, '3'],
    ['a format version that is not a number', 'v9', '"v9"'],
  ] as const) {
    test(`a store in ${what} is refused with DATA_FORMAT_UNSUPPORTED, naming it and the versions read`, async () => {
      const path = `${dir.path}/refused-${named.replaceAll('"', '')}`;
      const store = LmdbStore.open(path);
      await store.apply([{ key: Buffer.from('k'), value: Buffer.from('v'), version: 1 }], new Map([[0, 1]]), 'log-1');
      await store.close();
      await formatEntry(path, { set: written });

      assert.throws(
        () => LmdbStore.open(path),
        (error: unknown) => {
          assert.ok(isKvs2Error(error), String(error));
          assert.equal(error.code, 'DATA_FORMAT_UNSUPPORTED');
          assert.equal(
            error.message,
            `LMDB store in ${path} is in format version ${named}, which this kvs2 (${KVS2_VERSION}) cannot read: ` +
              'it reads store format version 1, 2. It was written by a newer kvs2: run that version (or a later one) ' +
              'on this data dir.',
          );
          return true;
        },
      );
      // Refused, not rewritten.
      assert.equal(await formatEntry(path), written);
    });
  }
});
