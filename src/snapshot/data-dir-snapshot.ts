import { statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Kvs2Error } from '../errors.js';
import { LmdbStore } from '../store/lmdb-store.js';
import { StoreLoader } from '../store/store-loader.js';
import type { StoreEntry } from '../store/store-snapshot.js';
import { holdsData, makeStagingDir, refuseIfNodeRunning, replaceStoreData, storeDirOf } from './data-dir.js';
import { SnapshotEncoder, type SnapshotEncoderOptions } from './snapshot-encoder.js';
import { logKindOf } from './snapshot-format.js';

/** A snapshot of a stopped node's store, and the store it reads from; close() ends both. */
export interface DataDirSnapshot extends AsyncDisposable {
  readonly encoder: SnapshotEncoder;
  close(): Promise<void>;
}

/**
 * Opens the store of a stopped node's data dir and a snapshot of it (`kvs2 snapshot save --data-dir`).
 * Refuses (DATA_DIR_IN_USE) while a node runs on it: a running node's snapshot comes over its API instead.
 */
export async function snapshotDataDir(dataDir: string, options: SnapshotEncoderOptions = {}): Promise<DataDirSnapshot> {
  await refuseIfNodeRunning(dataDir, `take a snapshot of ${dataDir} from its files`);
  const store = await openExistingStore(dataDir);
  let encoder: SnapshotEncoder;
  try {
    encoder = new SnapshotEncoder(store.snapshot(), options);
  } catch (error) {
    await store.close();
    throw error;
  }
  const close = async (): Promise<void> => {
    encoder.close();
    await store.close();
  };
  return { encoder, close, [Symbol.asyncDispose]: close };
}

export interface CompactedStore {
  readonly keys: number;
  /** data.mdb's size before and after, in bytes. */
  readonly bytesBefore: number;
  readonly bytesAfter: number;
}

/** Entries handed to the loader per transaction. */
const LOAD_BATCH_ENTRIES = 10_000;
const LOAD_BATCH_BYTES = 8 * 1024 * 1024;

/**
 * Rewrites a stopped node's store in key order (`kvs2 compact`): a snapshot of it is loaded into a new
 * store in a staging folder (store-loader.ts: full pages, no free pages), with the same progress, which
 * then replaces data.mdb in one rename. The log is left as it is. A failure leaves the store as it was.
 */
export async function compactDataDir(dataDir: string): Promise<CompactedStore> {
  await refuseIfNodeRunning(dataDir, `compact the store in ${dataDir}`);
  const dataFile = join(storeDirOf(dataDir), 'data.mdb');
  const store = await openExistingStore(dataDir);
  const bytesBefore = statSync(dataFile).size;
  let staging: string | undefined;
  let loader: StoreLoader | undefined;
  try {
    staging = await makeStagingDir(dataDir);
    loader = await StoreLoader.create(join(staging, 'store'));
    using snapshot = store.snapshot();
    let batch: StoreEntry[] = [];
    let bytes = 0;
    for (const entry of snapshot.entries()) {
      batch.push(entry);
      bytes += entry.key.length + entry.value.length;
      if (batch.length >= LOAD_BATCH_ENTRIES || bytes >= LOAD_BATCH_BYTES) {
        loader.load(batch);
        batch = [];
        bytes = 0;
      }
    }
    loader.load(batch);
    if (loader.keys !== snapshot.keys) {
      throw new Kvs2Error(
        'INCONSISTENT_STATE',
        `compaction read ${loader.keys} entries, but the store counts ${snapshot.keys}`,
      );
    }
    const loaded = await loader.finish(snapshot.progress);
    snapshot.close();
    await store.close();
    await replaceStoreData(dataDir, loaded.dir);
    return { keys: loaded.keys, bytesBefore, bytesAfter: statSync(dataFile).size };
  } finally {
    await loader?.abandon();
    await store.close();
    if (staging !== undefined) await rm(staging, { recursive: true, force: true });
  }
}

/**
 * The data dir's store, which must exist: opening a missing one would create an empty store. One written
 * before versions (store format 1) is upgraded as its node would upgrade it (replica/store-upgrade.ts) when
 * it is of the embedded log; one of Kafka is refused, since its node rebuilds it from the topic instead.
 */
async function openExistingStore(dataDir: string): Promise<LmdbStore> {
  if (!holdsData(dataDir).store) {
    throw new Kvs2Error('STORE_UNAVAILABLE', `${dataDir} holds no store (no ${join(storeDirOf(dataDir), 'data.mdb')})`);
  }
  const store = LmdbStore.open(storeDirOf(dataDir));
  if (!store.unversioned) return store;
  try {
    if (logKindOf(store.progress().logIdentity) === 'kafka') {
      throw new Kvs2Error(
        'DATA_FORMAT_UNSUPPORTED',
        `${store.description} was written by a kvs2 before versions (store format 1) from Kafka: start this ` +
          "kvs2's node on it first, which rebuilds it from the topic with each key's offset as its version",
      );
    }
    store.upgradeUnversioned('assign-applied-offset');
    return store;
  } catch (error) {
    await store.close();
    throw error;
  }
}
