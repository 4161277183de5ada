import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { LmdbStore } from '../../src/store/lmdb-store.js';
import { tempDir } from '../support/paths.js';

describe('LmdbStore', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir('store');
  });
  after(async () => {
    await dir.remove();
  });

  test('applies puts and deletes with the offsets in one transaction, and keeps both across a reopen', async () => {
    const path = `${dir.path}/apply`;
    let store = LmdbStore.open(path);
    assert.deepEqual(store.progress(), { logIdentity: null, appliedOffsets: new Map(), caughtUpAt: null });
    const binaryKey = Buffer.from([0, 0xff, 0]);
    const applied = await store.apply(
      [
        { key: Buffer.from('a'), value: Buffer.from('1'), version: 1 },
        { key: binaryKey, value: Buffer.from([0, 1, 2]), version: 2 },
        { key: Buffer.from('empty'), value: Buffer.alloc(0), version: 3 },
        { key: Buffer.from('gone'), value: Buffer.from('x'), version: 4 },
      ],
      new Map([[0, 4]]),
      'log-1',
    );
    await applied.flushed;
    await store.apply([{ key: Buffer.from('gone'), value: null, version: 9 }], new Map([[3, 9]]), 'log-1');
    await store.close();

    store = LmdbStore.open(path);
    assert.deepEqual(store.get(Buffer.from('a')), Buffer.from('1'));
    assert.deepEqual(store.get(binaryKey), Buffer.from([0, 1, 2]));
    assert.deepEqual(store.get(Buffer.from('empty')), Buffer.alloc(0));
    assert.equal(store.get(Buffer.from('gone')), undefined);
    assert.deepEqual(
      store.progress().appliedOffsets,
      new Map([
        [0, 4],
        [3, 9],
      ]),
    );
    assert.equal(store.progress().logIdentity, 'log-1');
    await store.close();
  });

  test('values read back are copies that later writes do not change', async () => {
    const store = LmdbStore.open(`${dir.path}/copies`);
    await store.apply([{ key: Buffer.from('k'), value: Buffer.from('first'), version: 1 }], new Map([[0, 1]]), 'log');
    const first = store.get(Buffer.from('k'));
    await store.apply([{ key: Buffer.from('k'), value: Buffer.from('second'), version: 2 }], new Map([[0, 2]]), 'log');
    store.get(Buffer.from('k'));
    assert.deepEqual(first, Buffer.from('first'));
    await store.close();
  });

  test('values of every size read back whole, each independent of the reads after it', async () => {
    const store = LmdbStore.open(`${dir.path}/sizes`);
    // Empty, tiny, pooled, beyond lmdb-js's reusable read buffer, and several MiB.
    const sizes = [0, 1, 100, 5_000, 70_000, 1 << 20, 3 << 20, 7];
    const writes = sizes.map((size, i) => ({
      key: Buffer.from(`k${i}`),
      value: Buffer.alloc(size, 65 + i),
      version: i + 1,
    }));
    await store.apply(writes, new Map([[0, 1]]), 'log');
    const read = writes.map(({ key }) => store.get(key));
    for (const [i, value] of read.entries()) assert.deepEqual(value, writes[i]?.value, `value of ${sizes[i]} bytes`);
    assert.equal(store.get(Buffer.from('absent')), undefined);
    await store.close();
  });

  test('markCaughtUp is kept with the progress, and clear() forgets data and progress together', async () => {
    const path = `${dir.path}/clear`;
    let store = LmdbStore.open(path);
    await store.apply([{ key: Buffer.from('k'), value: Buffer.from('v'), version: 1 }], new Map([[0, 1]]), 'log');
    await store.markCaughtUp(1234);
    await store.apply([{ key: Buffer.from('k2'), value: Buffer.from('v'), version: 2 }], new Map([[0, 2]]), 'log');
    await store.close();
    store = LmdbStore.open(path);
    assert.equal(store.progress().caughtUpAt, 1234);
    await store.clear();
    assert.equal(store.get(Buffer.from('k')), undefined);
    await store.close();
    store = LmdbStore.open(path);
    assert.deepEqual(store.progress(), { logIdentity: null, appliedOffsets: new Map(), caughtUpAt: null });
    assert.equal(store.get(Buffer.from('k2')), undefined);
    await store.close();
  });

  test('stats count the keys (not the progress) and the bytes data.mdb takes on disk', async () => {
    const store = LmdbStore.open(`${dir.path}/stats`);
    try {
      assert.equal(store.stats().keys, 0);
      const before = store.stats().bytesOnDisk;
      assert.ok(before > 0, 'a new environment already has its meta pages on disk');
      const value = Buffer.alloc(4096, 7);
      const writes = Array.from({ length: 1000 }, (_, i) => ({ key: Buffer.from(`key-${i}`), value, version: i + 1 }));
      await (await store.apply(writes, new Map([[0, 1000]]), 'log')).flushed;
      assert.equal(store.stats().keys, 1000);
      assert.ok(store.stats().bytesOnDisk >= before + 1000 * 4096, `${store.stats().bytesOnDisk} bytes`);
      await store.apply([{ key: Buffer.from('key-0'), value: null, version: 1001 }], new Map([[0, 1001]]), 'log');
      assert.equal(store.stats().keys, 999);
    } finally {
      await store.close();
    }
  });
});
