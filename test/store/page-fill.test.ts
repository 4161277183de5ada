import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { compactDataDir } from '../../src/snapshot/data-dir-snapshot.js';
import { LmdbStore } from '../../src/store/lmdb-store.js';
import { fillRatio, keyOrderedLeafPages } from '../../src/store/page-fill.js';
import type { StoreWrite } from '../../src/store/store.js';
import { tempDir } from '../support/paths.js';
import { shuffledIndexes } from '../support/shuffled.js';

const KEYS = 30_000;
const keyOf = (i: number): Buffer => Buffer.from(`key-${String(i).padStart(6, '0')}`);

/** A store holding KEYS keys written in `order`, 1,000 a transaction, as a replica applies batches. */
async function storeWritten(path: string, order: readonly number[], valueBytes: (i: number) => number) {
  const store = LmdbStore.open(path);
  for (let at = 0; at < order.length; at += 1_000) {
    const writes: StoreWrite[] = order
      .slice(at, at + 1_000)
      .map((i) => ({ key: keyOf(i), value: Buffer.alloc(valueBytes(i), 'v'), version: at + 1 }));
    await store.apply(writes, new Map([[0, at + 1_000]]), 'embedded:page-fill');
  }
  return store;
}

describe("a store's page fill against a key-ordered rewrite", () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir('page-fill');
  });
  after(async () => {
    await dir.remove();
  });

  test('filled in random order: pages about 2/3 full; rewritten in key order: nearly full, as estimated', async () => {
    const dataDir = `${dir.path}/random`;
    const store = await storeWritten(`${dataDir}/store`, shuffledIndexes(KEYS, 7), () => 100);
    try {
      const fill = store.pageFill();
      assert.equal(fill.entries, KEYS);
      assert.ok(fillRatio(fill) > 0.5 && fillRatio(fill) < 0.8, JSON.stringify(fill));
    } finally {
      await store.close();
    }
    // What kvs2 compact (and a restore) writes: pages filled in key order.
    await compactDataDir(dataDir);
    const compacted = LmdbStore.open(`${dataDir}/store`);
    try {
      const fill = compacted.pageFill();
      assert.equal(fill.entries, KEYS);
      // The estimate packs entries fractionally; LMDB packs whole ones (31 of these a page, not 31.9).
      assert.ok(Math.abs(fill.keyOrderedLeafPages - fill.leafPages) <= fill.leafPages * 0.05, JSON.stringify(fill));
      assert.ok(fillRatio(fill) >= 0.95, JSON.stringify(fill));
    } finally {
      await compacted.close();
    }
  });

  test('written in ascending key order by the replica: above the rewrite threshold', async () => {
    const store = await storeWritten(`${dir.path}/ordered/store`, [...Array(KEYS).keys()], () => 100);
    try {
      assert.ok(fillRatio(store.pageFill()) >= 0.9, JSON.stringify(store.pageFill()));
    } finally {
      await store.close();
    }
  });

  test('values large enough for overflow pages count as a page number in the leaf', () => {
    // 4 KiB pages: room 4080, nodemax 2040. 16-byte keys with 3,000-byte values go to overflow pages, leaving
    // 8 + 16 + 8 bytes (and a 2-byte index slot) in the leaf: 120 a page.
    assert.equal(keyOrderedLeafPages(1_200, 4096, [{ keyBytes: 16, valueBytes: 3_000 }]), 10);
    // 16-byte keys with 100-byte values stay in the leaf: 8 + 16 + 100 + 2 = 126 bytes, 32.4 a page.
    assert.equal(keyOrderedLeafPages(3_240, 4096, [{ keyBytes: 16, valueBytes: 100 }]), 101);
    assert.equal(keyOrderedLeafPages(0, 4096, []), 0);
  });
});
