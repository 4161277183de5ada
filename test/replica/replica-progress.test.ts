import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EmbeddedLog } from '../../src/log/embedded/embedded-log.js';
import { createLogger } from '../../src/logger.js';
import { Replica } from '../../src/replica/replica.js';
import type { PartitionLag } from '../../src/replica/replica-progress.js';
import { LmdbStore } from '../../src/store/lmdb-store.js';
import type { Store } from '../../src/store/store.js';
import { eventually } from '../support/grpc-clients.js';
import { MemoryLog } from '../support/memory-log.js';
import { tempDir } from '../support/paths.js';

const logger = createLogger('silent');

/** The store, with its transactions held while the gate is closed: a replica that cannot keep up. */
function gatedStore(lmdb: LmdbStore) {
  let gate: PromiseWithResolvers<void> | null = null;
  const store: Store = {
    description: lmdb.description,
    get: (key) => lmdb.get(key),
    get lastVersion() {
      return lmdb.lastVersion;
    },
    get unversioned() {
      return lmdb.unversioned;
    },
    upgradeUnversioned: (upgrade) => lmdb.upgradeUnversioned(upgrade),
    advanceReads: () => lmdb.advanceReads(),
    scan: (range) => lmdb.scan(range),
    progress: () => lmdb.progress(),
    stats: () => lmdb.stats(),
    apply: async (writes, offsets, identity) => {
      while (gate !== null) await gate.promise;
      return lmdb.apply(writes, offsets, identity);
    },
    markCaughtUp: (at) => lmdb.markCaughtUp(at),
    flushed: () => lmdb.flushed(),
    clear: () => lmdb.clear(),
    close: () => lmdb.close(),
  };
  return {
    store,
    hold: () => {
      gate ??= Promise.withResolvers();
    },
    release: () => {
      const held = gate;
      gate = null;
      held?.resolve();
    },
  };
}

const lag = (partitions: readonly PartitionLag[]): PartitionLag | undefined => partitions[0];

describe('ReplicaProgress: how far behind the log the replica is', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir('replica-progress');
  });
  after(async () => {
    await dir.remove();
  });

  test('lag per partition during the bootstrap and after it, the bootstrap ratio and the last catch-up', async () => {
    const path = `${dir.path}/bootstrap`;
    const log = new EmbeddedLog({ dir: `${path}/log` });
    const lmdb = LmdbStore.open(`${path}/store`);
    const gated = gatedStore(lmdb);
    const replica = new Replica({ log, store: gated.store, logger, onFatal: () => {}, endRefreshMs: 20 });
    const progress = replica.progress;
    try {
      assert.deepEqual(progress.partitions(), []);
      assert.equal(progress.bootstrapRatio(), 0);
      assert.equal(progress.lastCaughtUpAtMs(), null);

      const identity = await log.open();
      for (let i = 0; i < 10; i++)
        await log.append(Buffer.from(`k${i}`), Buffer.from('v'), AbortSignal.timeout(15_000));
      gated.hold();
      const startedAt = Date.now();
      await replica.start(identity);
      // Nothing applied yet: the whole log is the lag, and the bootstrap has not begun.
      assert.deepEqual(progress.partitions(), [{ partition: 0, appliedOffset: 0, endOffset: 10, lagRecords: 10 }]);
      assert.equal(progress.bootstrapRatio(), 0);
      const updates: number[] = [];
      const unsubscribe = progress.onUpdate(() => updates.push(lag(progress.partitions())?.lagRecords ?? -1));

      gated.release();
      await replica.whenCaughtUp();
      assert.deepEqual(lag(progress.partitions()), { partition: 0, appliedOffset: 10, endOffset: 10, lagRecords: 0 });
      assert.equal(progress.bootstrapRatio(), 1);
      const caughtUpAt = progress.lastCaughtUpAtMs();
      assert.ok(caughtUpAt !== null && caughtUpAt >= startedAt && caughtUpAt <= Date.now(), `${caughtUpAt}`);

      // Past the bootstrap: records written while the replica cannot apply show as lag once the end is
      // asked for again, and the lag goes once they are applied.
      gated.hold();
      for (let i = 10; i < 15; i++)
        await log.append(Buffer.from(`k${i}`), Buffer.from('v'), AbortSignal.timeout(15_000));
      await eventually(() => lag(progress.partitions())?.lagRecords === 5, 5000, 'a lag of 5 records');
      assert.ok(updates.includes(5), 'listeners heard of the new end');
      assert.equal(progress.bootstrapRatio(), 1, 'the bootstrap stays done');
      const stuckSince = Date.now();
      gated.release();
      await eventually(() => lag(progress.partitions())?.lagRecords === 0, 5000, 'no lag');
      assert.deepEqual(lag(progress.partitions()), { partition: 0, appliedOffset: 15, endOffset: 15, lagRecords: 0 });
      await eventually(() => (progress.lastCaughtUpAtMs() ?? 0) >= stuckSince, 5000, 'a newer catch-up time');
      unsubscribe();
    } finally {
      gated.release();
      await replica.stop();
      await log.close();
      await lmdb.close();
    }
  });

  test('the bootstrap ratio is the share of the first catch-up applied', async () => {
    // Batches of two records, so that the replica can be stopped half way through its first catch-up.
    const log = new MemoryLog({ maxBatchRecords: 2 });
    const lmdb = LmdbStore.open(`${dir.path}/ratio`);
    const gated = gatedStore(lmdb);
    let batches = 0;
    const store: Store = {
      ...gated.store,
      apply: (writes, offsets, identity) => {
        if (++batches === 3) gated.hold();
        return gated.store.apply(writes, offsets, identity);
      },
    };
    const replica = new Replica({ log, store, logger, onFatal: () => {}, endRefreshMs: 20 });
    try {
      const identity = await log.open();
      for (let i = 0; i < 8; i++) await log.append(Buffer.from(`k${i}`), Buffer.from('v'));
      await replica.start(identity);
      await eventually(() => replica.watermark.appliedOffsets.get(0) === 4, 5000, 'two batches applied');
      assert.equal(replica.progress.bootstrapRatio(), 0.5);
      gated.release();
      await replica.whenCaughtUp();
      assert.equal(replica.progress.bootstrapRatio(), 1);
    } finally {
      gated.release();
      await replica.stop();
      await log.close();
      await lmdb.close();
    }
  });
});
