import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Kvs2Error } from '../../src/errors.js';
import { EmbeddedLog } from '../../src/log/embedded/embedded-log.js';
import { createLogger } from '../../src/logger.js';
import { Replica } from '../../src/replica/replica.js';
import { LmdbStore } from '../../src/store/lmdb-store.js';
import type { Store } from '../../src/store/store.js';
import { eventually } from '../support/grpc-clients.js';
import { tempDir } from '../support/paths.js';

const logger = createLogger('silent');

async function startReplica(path: string, onFatal: (e: Kvs2Error) => void = () => {}) {
  const log = new EmbeddedLog({ dir: `${path}/log`, retainRecords: 0 });
  const store = LmdbStore.open(`${path}/store`);
  const logIdentity = await log.open();
  const replica = new Replica({ log, store, logger, onFatal });
  return {
    log,
    logIdentity,
    store,
    replica,
    close: async () => {
      await replica.stop();
      await log.close();
      await store.close();
    },
  };
}

describe('Replica on the embedded log', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir('replica');
  });
  after(async () => {
    await dir.remove();
  });

  test('applies appended records to the store, deletes included, and reports catch-up', async () => {
    const node = await startReplica(`${dir.path}/apply`);
    await node.log.append(Buffer.from('a'), Buffer.from('1'), AbortSignal.timeout(15_000));
    await node.log.append(Buffer.from('b'), Buffer.from('2'), AbortSignal.timeout(15_000));
    await node.replica.start(node.logIdentity);
    await node.replica.whenCaughtUp();
    assert.deepEqual(node.store.get(Buffer.from('a')), Buffer.from('1'));
    await node.log.append(Buffer.from('a'), null, AbortSignal.timeout(15_000));
    await eventually(() => node.store.get(Buffer.from('a')) === undefined, 5000, 'the delete');
    assert.deepEqual(node.replica.watermark.appliedOffsets, new Map([[0, 3]]));
    await node.close();
  });

  test('resumes from the stored offsets after a restart instead of replaying, and the log is released', async () => {
    const path = `${dir.path}/resume`;
    let node = await startReplica(path);
    await node.replica.start(node.logIdentity);
    for (let i = 0; i < 50; i++)
      await node.log.append(Buffer.from(`k${i}`), Buffer.from(`v${i}`), AbortSignal.timeout(15_000));
    await eventually(() => node.replica.watermark.appliedOffsets.get(0) === 50, 5000, 'all applied');
    await eventually(async () => (await node.log.startOffsets()).get(0) === 50, 5000, 'the log to be released');
    await node.close();

    node = await startReplica(path);
    assert.deepEqual(node.store.progress().appliedOffsets, new Map([[0, 50]]));
    await node.replica.start(node.logIdentity);
    await node.replica.whenCaughtUp();
    assert.deepEqual(node.store.get(Buffer.from('k49')), Buffer.from('v49'));
    await node.log.append(Buffer.from('k50'), Buffer.from('v50'), AbortSignal.timeout(15_000));
    await eventually(() => node.store.get(Buffer.from('k50')) !== undefined, 5000, 'the new record');
    await node.close();
  });

  test('refuses a store built from another embedded log: it cannot be rebuilt from a log that discards history', async () => {
    const path = `${dir.path}/mismatch`;
    const first = await startReplica(path);
    await first.replica.start(first.logIdentity);
    await first.log.append(Buffer.from('k'), Buffer.from('v'), AbortSignal.timeout(15_000));
    await eventually(() => first.store.get(Buffer.from('k')) !== undefined, 5000, 'the write');
    await first.close();

    const other = new EmbeddedLog({ dir: `${path}/other-log` });
    const store = LmdbStore.open(`${path}/store`);
    const replica = new Replica({ log: other, store, logger, onFatal: () => {} });
    await assert.rejects(replica.start(await other.open()), { code: 'INCONSISTENT_STATE' });
    assert.deepEqual(store.get(Buffer.from('k')), Buffer.from('v'), 'nothing was deleted');
    await other.close();
    await store.close();
  });
  test("the log keeps what the store has not synced: a machine crash that loses the store's last transactions is replayed", async () => {
    const path = `${dir.path}/unsynced`;
    const log = new EmbeddedLog({ dir: `${path}/log`, retainRecords: 0 });
    const lmdb = LmdbStore.open(`${path}/store`);
    // The store's syncs are held back, as when a machine stops before the disk has them.
    const syncs = Promise.withResolvers<void>();
    const store = wrapStore(lmdb, {
      apply: async (writes, offsets, identity) => {
        const applied = await lmdb.apply(writes, offsets, identity);
        return { flushed: syncs.promise.then(() => applied.flushed) };
      },
    });
    const replica = new Replica({ log, store, logger, onFatal: () => {} });
    await replica.start(await log.open());
    for (let i = 0; i < 5; i++)
      await log.append(Buffer.from(`k${i}`), Buffer.from(`v${i}`), AbortSignal.timeout(15_000));
    await eventually(() => replica.watermark.appliedOffsets.get(0) === 5, 5000, 'all applied');
    // Applied and visible, but not synced: a machine crash now would lose them from the store, so the
    // log must still hold them.
    assert.deepEqual(await log.startOffsets(), new Map([[0, 0]]));
    syncs.resolve();
    await eventually(async () => (await log.startOffsets()).get(0) === 5, 5000, 'the log to be released');
    await replica.stop();
    await log.close();
    await lmdb.close();
  });

  test('a store behind the log (its last transactions lost) resumes from its own offsets and replays the rest', async () => {
    const path = `${dir.path}/behind`;
    const log = new EmbeddedLog({ dir: `${path}/log` });
    const identity = await log.open();
    for (let i = 0; i < 10; i++)
      await log.append(Buffer.from(`k${i}`), Buffer.from(`v${i}`), AbortSignal.timeout(15_000));
    // The store as the last synced transaction left it: records 0..3 applied.
    const store = LmdbStore.open(`${path}/store`);
    await store.apply(
      Array.from({ length: 4 }, (_, i) => ({ key: Buffer.from(`k${i}`), value: Buffer.from(`v${i}`), version: i + 1 })),
      new Map([[0, 4]]),
      identity,
    );
    await store.flushed();
    const replica = new Replica({ log, store, logger, onFatal: () => {} });
    await replica.start(identity);
    await replica.whenCaughtUp();
    for (let i = 0; i < 10; i++) assert.deepEqual(store.get(Buffer.from(`k${i}`)), Buffer.from(`v${i}`));
    assert.deepEqual(store.progress().appliedOffsets, new Map([[0, 10]]));
    await replica.stop();
    await log.close();
    await store.close();
  });
  test('a graceful stop applies what the log held when it was called, so a restart replays nothing', async () => {
    const path = `${dir.path}/drain`;
    const log = new EmbeddedLog({ dir: `${path}/log` });
    const lmdb = LmdbStore.open(`${path}/store`);
    // The first transaction is held until the stop has been asked for: the second record then arrives
    // while the replica is busy, as under load.
    const held = Promise.withResolvers<void>();
    const applying = Promise.withResolvers<void>();
    let applies = 0;
    const store = wrapStore(lmdb, {
      apply: async (writes, offsets, identity) => {
        if (applies++ === 0) {
          applying.resolve();
          await held.promise;
        }
        return lmdb.apply(writes, offsets, identity);
      },
    });
    const replica = new Replica({ log, store, logger, onFatal: () => {} });
    await replica.start(await log.open());
    await log.append(Buffer.from('first'), Buffer.from('1'), AbortSignal.timeout(15_000));
    await applying.promise;
    await log.append(Buffer.from('second'), Buffer.from('2'), AbortSignal.timeout(15_000));
    const stopped = replica.stop();
    held.resolve();
    await stopped;
    assert.deepEqual(lmdb.progress().appliedOffsets, new Map([[0, 2]]));
    assert.deepEqual(lmdb.get(Buffer.from('second')), Buffer.from('2'));
    await log.close();
    await lmdb.close();
  });
});

/** The store with some of its methods replaced: an in-memory stand-in for one of our own interfaces. */
function wrapStore(lmdb: LmdbStore, overrides: Partial<Pick<Store, 'apply'>>): Store {
  return {
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
    apply: overrides.apply ?? ((writes, offsets, identity) => lmdb.apply(writes, offsets, identity)),
    markCaughtUp: (at) => lmdb.markCaughtUp(at),
    flushed: () => lmdb.flushed(),
    clear: () => lmdb.clear(),
    close: () => lmdb.close(),
  };
}
