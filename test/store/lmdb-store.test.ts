import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { isKvs2Error } from '../../src/errors.js';
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

describe("LmdbStore with inline commits (the in-process replica worker's store)", () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir('store-inline');
  });
  after(async () => {
    await dir.remove();
  });
  const k = (text: string): Buffer => Buffer.from(text);

  test('apply() has committed before it returns: a read right after the call sees it, as a reopen does', async () => {
    const path = `${dir.path}/apply`;
    let store = LmdbStore.open(path, { inlineCommits: true });
    const pending = store.apply(
      [
        { key: k('a'), value: k('1'), version: 1 },
        { key: k('gone'), value: k('x'), version: 2 },
      ],
      new Map([[0, 2]]),
      'log-1',
    );
    // Not awaited yet: a batched commit would still be queued for libuv's pool here.
    store.advanceReads();
    assert.deepEqual(store.get(k('a')), k('1'));
    assert.deepEqual(store.progress().appliedOffsets, new Map([[0, 2]]));
    await (await pending).flushed;
    await store.apply([{ key: k('gone'), value: null, version: 9 }], new Map([[3, 9]]), 'log-1');
    await store.markCaughtUp(77);
    await store.flushed();
    await store.close();

    // Reopened as a node opens it (batched commits): everything is there, progress with it.
    store = LmdbStore.open(path);
    try {
      assert.deepEqual(store.get(k('a')), k('1'));
      assert.equal(store.lastVersion, 1);
      assert.equal(store.get(k('gone')), undefined);
      assert.deepEqual(store.progress(), {
        logIdentity: 'log-1',
        appliedOffsets: new Map([
          [0, 2],
          [3, 9],
        ]),
        caughtUpAt: 77,
      });
    } finally {
      await store.close();
    }
  });

  test('a write LMDB refuses fails with STORE_UNAVAILABLE, commits none of its batch, and the store goes on', async () => {
    const store = LmdbStore.open(`${dir.path}/refused`, { inlineCommits: true });
    try {
      await store.apply([{ key: k('before'), value: k('v'), version: 1 }], new Map([[0, 1]]), 'log');
      // LMDB's keys are at most 1,978 bytes here: the second write of the batch is refused.
      const refused = store.apply(
        [
          { key: k('in-the-batch'), value: k('v'), version: 2 },
          { key: Buffer.alloc(4000, 1), value: k('v'), version: 3 },
        ],
        new Map([[0, 3]]),
        'log',
      );
      await assert.rejects(refused, (error: unknown) => isKvs2Error(error) && error.code === 'STORE_UNAVAILABLE');
      store.advanceReads();
      assert.equal(store.get(k('in-the-batch')), undefined);
      assert.deepEqual(store.progress().appliedOffsets, new Map([[0, 1]]));
      await store.apply([{ key: k('after'), value: k('v'), version: 4 }], new Map([[0, 4]]), 'log');
      store.advanceReads();
      assert.deepEqual(store.get(k('after')), k('v'));
      assert.deepEqual(store.get(k('before')), k('v'));
      assert.deepEqual(store.progress().appliedOffsets, new Map([[0, 4]]));
    } finally {
      await store.close();
    }
  });
});
