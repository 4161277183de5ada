import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeSnapshot } from '../../src/snapshot/snapshot-decoder.js';
import { SnapshotEncoder } from '../../src/snapshot/snapshot-encoder.js';
import type { SnapshotMetadata } from '../../src/snapshot/snapshot-format.js';
import { LmdbStore } from '../../src/store/lmdb-store.js';
import type { StoreWrite } from '../../src/store/store.js';
import { tempDir } from '../support/paths.js';

const LOG = 'embedded:0b9b7c43-2f61-4e1d-8f5a-6c1b2a3d4e5f';
const KEYS = 300;

/** The i-th write of a known sequence: overwrites and deletes, so each prefix leaves a different content. */
function writeNumber(i: number): StoreWrite {
  const key = Buffer.from(`key/${String(i % KEYS).padStart(4, '0')}`);
  return { key, value: i % 11 === 5 ? null : Buffer.from(`value of write ${i}`), version: i + 1 };
}

/** What the store holds after the first `n` writes of the sequence, in key order. */
function contentAfter(n: number): Array<[string, string]> {
  const content = new Map<string, string>();
  for (let i = 0; i < n; i++) {
    const { key, value } = writeNumber(i);
    if (value === null) content.delete(key.toString());
    else content.set(key.toString(), value.toString());
  }
  return [...content].sort((a, b) => Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0])));
}

describe('a snapshot of a store under writes', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir('live-snapshot');
  });
  after(async () => {
    await dir.remove();
  });

  test('holds exactly the content of the writes below its offsets, while writes go on', async () => {
    const store = LmdbStore.open(join(dir.path, 'store'));
    let written = 0;
    let onWrite: () => void = () => {};
    const apply = async (): Promise<void> => {
      const i = written;
      await store.apply([writeNumber(i)], new Map([[0, i + 1]]), LOG);
      written = i + 1;
      onWrite();
    };
    /** Resolves once another write has committed. */
    const nextWrite = () => new Promise<void>((resolve) => (onWrite = resolve));
    try {
      for (let i = 0; i < 1000; i++) await apply();
      let reading = true;
      const writer = (async () => {
        while (reading) await apply();
      })();
      const writtenBefore = written;
      // Small frames read one at a time, each after another write committed: writes interleave with the reads.
      const encoder = new SnapshotEncoder(store.snapshot(), { frameBytes: 256 });
      const paced = (async function* () {
        for await (const chunk of encoder) {
          yield chunk;
          await nextWrite();
        }
      })();
      let metadata: SnapshotMetadata | undefined;
      const entries: Array<[string, string]> = [];
      let ended = false;
      for await (const part of decodeSnapshot(paced)) {
        if (part.kind === 'metadata') metadata = part.metadata;
        else if (part.kind === 'entries') {
          for (const { key, value } of part.entries)
            entries.push([Buffer.from(key).toString(), Buffer.from(value).toString()]);
        } else ended = true;
      }
      reading = false;
      await writer;
      assert.ok(ended && metadata !== undefined);
      const at = metadata.appliedOffsets.get(0) ?? -1;
      assert.ok(at >= writtenBefore, `the snapshot is at offset ${at}, taken after ${writtenBefore} writes`);
      assert.ok(written > at + 20, `writes went on while it was read (${written} written, snapshot at ${at})`);
      assert.equal(metadata.keys, entries.length);
      assert.deepEqual(entries, contentAfter(at));
    } finally {
      await store.close();
    }
  });

  test('each of many snapshots taken between and during commits counts and holds exactly its content', async () => {
    const store = LmdbStore.open(join(dir.path, 'many'));
    try {
      let written = 0;
      const apply = (): Promise<unknown> => {
        const i = written++;
        return store.apply([writeNumber(i)], new Map([[0, i + 1]]), LOG);
      };
      for (let round = 0; round < 60; round++) {
        // A commit in flight on LMDB's write thread while the snapshot is taken, and more after it.
        const inFlight = apply();
        using snapshot = store.snapshot();
        const more = [apply(), apply()];
        const at = snapshot.progress.appliedOffsets.get(0) ?? 0;
        const entries: Array<[string, string]> = [];
        for (const { key, value } of snapshot.entries()) {
          entries.push([Buffer.from(key).toString(), Buffer.from(value).toString()]);
        }
        assert.equal(snapshot.keys, entries.length, `round ${round}: the count of the snapshot at ${at}`);
        assert.deepEqual(entries, contentAfter(at), `round ${round}: the content at ${at}`);
        await Promise.all([inFlight, ...more]);
      }
    } finally {
      await store.close();
    }
  });
});
