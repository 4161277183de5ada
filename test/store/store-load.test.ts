import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { LmdbStore } from '../../src/store/lmdb-store.js';
import { tempDir } from '../support/paths.js';

const key = (i: number): Buffer => Buffer.from(`key-${String(i).padStart(6, '0')}`);
/** 1 KiB values: 9,000 of them pass the load's 8 MiB batch, so some are written before finish(). */
const value = (i: number): Buffer => Buffer.alloc(1024, i % 251);
const entries = (from: number, to: number) =>
  Array.from({ length: to - from }, (_, n) => ({ key: key(from + n), value: value(from + n), version: from + n + 1 }));
const PROGRESS = {
  logIdentity: 'kafka:topic-id',
  appliedOffsets: new Map([
    [0, 12],
    [2, 7],
  ]),
  caughtUpAt: 1_700_000_000_000,
};

/** Loading a peer's snapshot into an empty store (a bootstrap): whole, or not at all. */
describe('LmdbStore.beginLoad', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir('store-load');
  });
  after(async () => {
    await dir.remove();
  });

  test('a finished load holds every entry and the snapshot progress, across a reopen', async () => {
    const path = `${dir.path}/finished`;
    let store = LmdbStore.open(path);
    const load = store.beginLoad();
    load.add(entries(0, 5_000));
    load.add(entries(5_000, 9_500));
    await load.finish(PROGRESS);
    assert.deepEqual(store.progress(), PROGRESS);
    await store.close();
    store = LmdbStore.open(path);
    assert.equal(store.clearedUnfinishedLoad, false);
    assert.deepEqual(store.progress(), PROGRESS);
    assert.equal(store.stats().keys, 9_500);
    assert.deepEqual(store.get(key(9_499)), value(9_499));
    assert.equal(store.lastVersion, 9_500, 'each entry keeps the version it was loaded with');
    assert.deepEqual(store.get(key(0)), value(0));
    assert.equal(store.lastVersion, 1);
    await store.close();
  });

  test('a load cut short (the process died) is cleared when the store opens, never resumed', async () => {
    const path = `${dir.path}/cut`;
    let store = LmdbStore.open(path);
    const load = store.beginLoad();
    load.add(entries(0, 9_000));
    assert.ok(store.stats().keys > 0, 'part of the load is already written');
    await store.close();
    store = LmdbStore.open(path);
    assert.equal(store.clearedUnfinishedLoad, true);
    assert.equal(store.stats().keys, 0);
    assert.deepEqual(store.progress(), { logIdentity: null, appliedOffsets: new Map(), caughtUpAt: null });
    // Empty again: a new load may begin.
    const again = store.beginLoad();
    again.add(entries(0, 10));
    await again.finish(PROGRESS);
    assert.equal(store.stats().keys, 10);
    await store.close();
  });

  test('an abandoned load leaves the store empty; keys out of order are refused; only an empty store loads', async () => {
    const store = LmdbStore.open(`${dir.path}/abandoned`);
    const load = store.beginLoad();
    load.add(entries(0, 9_000));
    await load.abandon();
    assert.equal(store.stats().keys, 0);
    assert.deepEqual(store.progress().appliedOffsets, new Map());

    const disordered = store.beginLoad();
    assert.throws(() => disordered.add([...entries(5, 6), ...entries(0, 9_000)]), { code: 'INVALID_ARGUMENT' });
    await disordered.abandon();

    await store.apply([{ key: Buffer.from('k'), value: Buffer.from('v'), version: 1 }], new Map([[0, 1]]), 'log-1');
    assert.throws(() => store.beginLoad(), { code: 'INCONSISTENT_STATE' });
    await store.close();
  });
});
