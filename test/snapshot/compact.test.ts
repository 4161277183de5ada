import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isKvs2Error } from '../../src/errors.js';
import { compactDataDir } from '../../src/snapshot/data-dir-snapshot.js';
import { tempDir } from '../support/paths.js';
import { fillStore, storeContent } from './snapshot-support.js';

describe('compacting a store', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir('compact');
  });
  after(async () => {
    await dir.remove();
  });

  test('keeps every key and the progress, and makes a store filled in random order smaller', async () => {
    const dataDir = join(dir.path, 'node');
    const storeDir = join(dataDir, 'store');
    // A fixed permutation of 20,000 keys: pages split in random places, as a bootstrap leaves them.
    const entries: Array<[Buffer, Buffer]> = [];
    for (let i = 0; i < 20_000; i++) {
      const n = (i * 7919) % 20_000;
      entries.push([Buffer.from(`user/${String(n).padStart(8, '0')}`), Buffer.alloc(60, n % 251)]);
    }
    const offsets = new Map([
      [0, 20_000],
      [1, 17],
    ]);
    await fillStore(storeDir, entries, offsets, 'kafka:compact-test-topic');
    const before = await storeContent(storeDir);
    const bytesBefore = statSync(join(storeDir, 'data.mdb')).size;

    const compacted = await compactDataDir(dataDir);

    assert.equal(compacted.keys, 20_000);
    assert.equal(compacted.bytesBefore, bytesBefore);
    assert.equal(compacted.bytesAfter, statSync(join(storeDir, 'data.mdb')).size);
    assert.ok(
      compacted.bytesAfter < bytesBefore * 0.8,
      `data.mdb went from ${bytesBefore} to ${compacted.bytesAfter} bytes`,
    );
    const after = await storeContent(storeDir);
    assert.deepEqual(after.entries, before.entries);
    assert.deepEqual(after.progress, before.progress);
  });

  test('a data dir without a store is refused, and none is created', async () => {
    const dataDir = join(dir.path, 'empty');
    await assert.rejects(
      compactDataDir(dataDir),
      (error: unknown) => isKvs2Error(error) && /holds no store/.test(error.message),
    );
    assert.throws(() => statSync(join(dataDir, 'store', 'data.mdb')));
  });
});
