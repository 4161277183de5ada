import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isKvs2Error } from '../../src/errors.js';
import { EmbeddedLog } from '../../src/log/embedded/embedded-log.js';
import { SnapshotEncoder } from '../../src/snapshot/snapshot-encoder.js';
import { HEADER_BYTES, SNAPSHOT_MAGIC } from '../../src/snapshot/snapshot-format.js';
import { installSnapshot, verifySnapshot } from '../../src/snapshot/snapshot-install.js';
import { LmdbStore } from '../../src/store/lmdb-store.js';
import type { StoreSnapshot } from '../../src/store/store-snapshot.js';
import { tempDir } from '../support/paths.js';
import { chunked, collect, fillStore, listing, storeContent } from './snapshot-support.js';

const EMBEDDED = 'embedded:5f0c4c1e-8d4b-4f4e-9a43-1c2d3e4f5a6b';

/** Entries of every shape: binary keys at both ends of the order, an empty value, one value larger than a frame. */
function variedEntries(count: number): Array<[Buffer, Buffer]> {
  const entries: Array<[Buffer, Buffer]> = [
    [Buffer.from([0]), Buffer.from('lowest key')],
    [Buffer.from([0xff, 0xff, 0xff]), Buffer.from('highest key')],
    [Buffer.from('empty'), Buffer.alloc(0)],
    [Buffer.from('large'), Buffer.alloc(300 * 1024, 7)],
    [Buffer.alloc(1978, 0x61), Buffer.from('longest key LMDB takes')],
  ];
  for (let i = 0; i < count; i++) entries.push([Buffer.from(`user/${i * 7919}`), Buffer.from(`value ${i}`)]);
  return entries;
}

async function snapshotOf(storeDir: string, options: ConstructorParameters<typeof SnapshotEncoder>[1] = {}) {
  const store = LmdbStore.open(storeDir);
  try {
    const encoder = new SnapshotEncoder(store.snapshot(), options);
    return { bytes: await collect(encoder), metadata: encoder.metadata };
  } finally {
    await store.close();
  }
}

function sortedHex(entries: ReadonlyArray<readonly [Buffer, Buffer]>): Array<[string, string]> {
  return entries
    .map(([key, value]): [Buffer, Buffer] => [key, value])
    .sort((a, b) => Buffer.compare(a[0], b[0]))
    .map(([key, value]) => [key.toString('hex'), value.toString('hex')]);
}

async function rejectsWith(promise: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(isKvs2Error(error), `a Kvs2Error, not ${String(error)}`);
    assert.equal(error.code, code, error.message);
    if (message !== undefined) assert.match(error.message, message);
    return true;
  });
}

describe('snapshots of a store', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let source: string;
  let entries: Array<[Buffer, Buffer]>;
  let good: Buffer;
  before(async () => {
    dir = await tempDir('snapshot');
    source = join(dir.path, 'source-store');
    entries = variedEntries(2000);
    await fillStore(source, entries, new Map([[0, 2005]]), EMBEDDED);
    // Small frames and chunks, so that the stream has many frames and a large entry spans several chunks.
    good = (await snapshotOf(source, { frameBytes: 4096, maxChunkBytes: 64 * 1024 })).bytes;
  });
  after(async () => {
    await dir.remove();
  });

  test('a snapshot restored into a new data dir holds every entry and the progress, read back in any cut', async () => {
    const dataDir = join(dir.path, 'restored');
    const installed = await installSnapshot(chunked(good, 777), { dataDir });
    assert.equal(installed.keys, entries.length);
    assert.equal(installed.replaced, false);
    assert.equal(installed.metadata.logKind, 'embedded');
    const restored = await storeContent(join(dataDir, 'store'));
    assert.deepEqual(restored.entries, sortedHex(entries));
    assert.deepEqual(restored.progress, {
      logIdentity: EMBEDDED,
      appliedOffsets: new Map([[0, 2005]]),
      caughtUpAt: 1_700_000_000_000,
    });
    assert.deepEqual(readdirSync(dataDir).sort(), ['log', 'store'], 'nothing of the staging is left behind');
  });

  test('a restored embedded node continues the same log at the snapshot offset', async () => {
    const dataDir = join(dir.path, 'continues');
    await installSnapshot(chunked(good, 65536), { dataDir });
    const log = new EmbeddedLog({ dir: join(dataDir, 'log') });
    try {
      assert.equal(await log.open(), EMBEDDED);
      assert.deepEqual(await log.startOffsets(), new Map([[0, 2005]]));
      assert.deepEqual(await log.endOffsets(AbortSignal.timeout(5000)), new Map([[0, 2005]]));
      const position = await log.append(Buffer.from('next'), Buffer.from('write'), AbortSignal.timeout(5000));
      assert.deepEqual(position, { partition: 0, offset: 2005 });
    } finally {
      await log.close();
    }
  });

  test('a snapshot of a store on Kafka keeps every partition and gets no embedded log', async () => {
    const storeDir = join(dir.path, 'kafka-store');
    const offsets = new Map([
      [0, 12],
      [3, 40],
      [11, 7],
    ]);
    await fillStore(storeDir, entries.slice(0, 50), offsets, 'kafka:Hj3kT0aFQ2mYx1n0b4s9ZA');
    const { bytes, metadata } = await snapshotOf(storeDir);
    assert.equal(metadata.logKind, 'kafka');
    const dataDir = join(dir.path, 'kafka-restored');
    await installSnapshot(chunked(bytes, 1000), { dataDir });
    assert.equal(existsSync(join(dataDir, 'log')), false);
    const restored = await storeContent(join(dataDir, 'store'));
    assert.deepEqual(restored.progress.appliedOffsets, offsets);
    assert.equal(restored.progress.logIdentity, 'kafka:Hj3kT0aFQ2mYx1n0b4s9ZA');
    assert.deepEqual(restored.entries, sortedHex(entries.slice(0, 50)));
  });

  test('inspect-style verification reads the metadata and checks the whole stream', async () => {
    const checked = await verifySnapshot(chunked(good, 10_000));
    assert.equal(checked.keys, entries.length);
    assert.equal(checked.metadata.keys, entries.length);
    assert.deepEqual(checked.metadata.appliedOffsets, new Map([[0, 2005]]));
    assert.match(checked.sha256, /^[0-9a-f]{64}$/);
  });

  describe('a damaged snapshot is refused and leaves the data dir as it was', () => {
    /** A data dir holding another store, which a failed restore with --force must leave alone. */
    let occupied: string;
    before(async () => {
      occupied = join(dir.path, 'occupied');
      await fillStore(
        join(occupied, 'store'),
        [[Buffer.from('mine'), Buffer.from('keep me')]],
        new Map([[0, 1]]),
        EMBEDDED,
      );
    });

    async function refused(bytes: Buffer, code: string, message?: RegExp): Promise<void> {
      const fresh = join(dir.path, `fresh-${Math.random().toString(36).slice(2)}`);
      await rejectsWith(installSnapshot(chunked(bytes, 4093), { dataDir: fresh }), code, message);
      assert.equal(existsSync(fresh), false, 'a data dir that did not exist still does not');
      const before = listing(occupied);
      await rejectsWith(installSnapshot(chunked(bytes, 4093), { dataDir: occupied, force: true }), code, message);
      assert.deepEqual(listing(occupied), before);
      assert.deepEqual((await storeContent(join(occupied, 'store'))).entries, [
        [Buffer.from('mine').toString('hex'), Buffer.from('keep me').toString('hex')],
      ]);
    }

    const cuts: Array<[string, (length: number) => number]> = [
      ['empty', () => 0],
      ['inside the magic', () => 5],
      ['after the header', () => HEADER_BYTES],
      ['inside the metadata frame', () => HEADER_BYTES + 20],
      ['in the middle', (length) => Math.floor(length / 2)],
      ['at a frame boundary before the trailer', (length) => length - 49],
      ['one byte short', (length) => length - 1],
    ];
    for (const [where, at] of cuts) {
      test(`cut short ${where}`, async () => {
        await refused(good.subarray(0, at(good.length)), 'SNAPSHOT_INVALID');
      });
    }

    const flips: Array<[string, (length: number) => number]> = [
      ['in the magic', () => 2],
      ['in the metadata', () => HEADER_BYTES + 30],
      ['in a frame length', () => HEADER_BYTES + 1],
      ['in an entry', (length) => Math.floor(length / 3)],
      ['in the large value', (length) => Math.floor(length / 2)],
      ['in the trailer checksum', (length) => length - 3],
    ];
    for (const [where, at] of flips) {
      test(`a byte flipped ${where}`, async () => {
        const damaged = Buffer.from(good);
        const position = at(damaged.length);
        damaged[position] = (damaged[position] as number) ^ 0x10;
        await refused(damaged, 'SNAPSHOT_INVALID');
      });
    }

    test('bytes after the trailer', async () => {
      await refused(Buffer.concat([good, Buffer.from('x')]), 'SNAPSHOT_INVALID', /follow its trailer/);
    });

    test('garbage, and a file that is not a snapshot', async () => {
      await refused(Buffer.from('this is not a snapshot at all, just some text\n'), 'SNAPSHOT_INVALID', /magic/);
      const random = Buffer.alloc(100_000);
      for (let i = 0; i < random.length; i++) random[i] = (i * 2654435761) >>> 24;
      await refused(random, 'SNAPSHOT_INVALID');
    });

    test('a snapshot from a newer format version is refused as DATA_FORMAT_UNSUPPORTED', async () => {
      const newer = Buffer.from(good);
      newer.writeUInt32BE(3, SNAPSHOT_MAGIC.length);
      await refused(newer, 'DATA_FORMAT_UNSUPPORTED', /format version 3, which this kvs2 .* cannot read/);
    });
  });

  test('a restore over a data dir holding a store is refused without force and replaces it with force', async () => {
    const dataDir = join(dir.path, 'replace');
    await fillStore(
      join(dataDir, 'store'),
      [[Buffer.from('old'), Buffer.from('old')]],
      new Map([[0, 99]]),
      EMBEDDED.replace('5f', '6f'),
    );
    const before = listing(dataDir);
    await rejectsWith(installSnapshot(chunked(good, 65536), { dataDir }), 'DATA_DIR_IN_USE', /--force/);
    assert.deepEqual(listing(dataDir), before);
    const installed = await installSnapshot(chunked(good, 65536), { dataDir, force: true });
    assert.equal(installed.replaced, true);
    assert.deepEqual((await storeContent(join(dataDir, 'store'))).entries, sortedHex(entries));
    assert.deepEqual(readdirSync(dataDir).sort(), ['log', 'store']);
  });

  test('accept() sees the metadata first and can refuse the snapshot before anything is written', async () => {
    const dataDir = join(dir.path, 'accept');
    await assert.rejects(
      installSnapshot(chunked(good, 65536), {
        dataDir,
        accept: (metadata) => {
          assert.equal(metadata.logIdentity, EMBEDDED);
          throw new Error('from another log');
        },
      }),
      /from another log/,
    );
    assert.equal(existsSync(dataDir), false);
  });

  test('closing the store ends an open snapshot, whose reads then fail as STORE_UNAVAILABLE', async () => {
    const store = LmdbStore.open(source);
    const snapshot = store.snapshot();
    const iterator = snapshot.entries();
    assert.equal(iterator.next().done, false);
    await store.close();
    assert.throws(
      () => iterator.next(),
      (error: unknown) => isKvs2Error(error) && error.code === 'STORE_UNAVAILABLE',
    );
    snapshot.close();
  });

  test('an encoder closes its snapshot when iteration ends early, fails, or never starts', async () => {
    /** An in-memory StoreSnapshot that counts its closes. */
    const memorySnapshot = (count: number, failAt?: number) => {
      const state = { closed: 0 };
      const snapshot: StoreSnapshot = {
        storeFormat: 2,
        progress: { logIdentity: EMBEDDED, appliedOffsets: new Map([[0, count]]), caughtUpAt: null },
        keys: count,
        *entries() {
          for (let i = 0; i < count; i++) {
            if (i === failAt) throw new Error('disk read failed');
            yield { key: Buffer.from(`k${String(i).padStart(6, '0')}`), value: Buffer.alloc(100), version: i + 1 };
          }
        },
        close: () => {
          state.closed++;
        },
        [Symbol.dispose]: () => snapshot.close(),
      };
      return { snapshot, state };
    };
    const early = memorySnapshot(1000);
    for await (const _chunk of new SnapshotEncoder(early.snapshot, { frameBytes: 1024 })) break;
    assert.equal(early.state.closed > 0, true, 'closed after a break');

    const failing = memorySnapshot(1000, 500);
    await assert.rejects(collect(new SnapshotEncoder(failing.snapshot, { frameBytes: 1024 })), /disk read failed/);
    assert.equal(failing.state.closed > 0, true, 'closed after a failure');

    const unread = memorySnapshot(10);
    new SnapshotEncoder(unread.snapshot).close();
    assert.equal(unread.state.closed > 0, true, 'closed without being iterated');

    const whole = memorySnapshot(1000);
    const checked = await verifySnapshot(new SnapshotEncoder(whole.snapshot, { frameBytes: 1024 }));
    assert.equal(checked.keys, 1000);
    assert.equal(whole.state.closed > 0, true, 'closed after the last chunk');
  });
});
