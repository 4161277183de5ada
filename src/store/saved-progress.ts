import type { StoreProgress } from './store.js';

/**
 * How a store lays out its progress in the `meta` database, shared by the store (lmdb-store.ts) and by
 * whatever writes a store of its own (store-loader.ts), so that both write exactly the same thing.
 */
export const PROGRESS_KEY = 'progress';
/** In `meta` while a snapshot is being loaded (LmdbStore.beginLoad()); never there in a store that is whole. */
export const LOADING_KEY = 'loading-snapshot';
/**
 * In `meta` while a format-1 store is upgraded with versions (LmdbStore.upgradeUnversioned()): the last key
 * (hex) whose value has its version, saved with each batch, so that an upgrade cut short resumes after it
 * (the format says 1 until the end).
 */
export const VERSIONS_UPGRADE_KEY = 'versions-upgraded-to';

/** Progress as saved in the meta database: plain data, so it survives format-agnostic encoding. */
export interface SavedProgress {
  logIdentity: string | null;
  appliedOffsets: Array<[number, number]>;
  caughtUpAt: number | null;
}

export function toSaved(progress: StoreProgress): SavedProgress {
  return {
    logIdentity: progress.logIdentity,
    appliedOffsets: [...progress.appliedOffsets],
    caughtUpAt: progress.caughtUpAt,
  };
}

export function toProgress(saved: SavedProgress | undefined): StoreProgress {
  if (saved === undefined) return { logIdentity: null, appliedOffsets: new Map(), caughtUpAt: null };
  return {
    logIdentity: saved.logIdentity,
    appliedOffsets: new Map(saved.appliedOffsets),
    caughtUpAt: saved.caughtUpAt,
  };
}

/**
 * Address space reserved for the memory map up front (the file grows only as data is written). lmdb-js
 * otherwise starts at 128 KiB and maps the file again at each doubling, keeping the older maps, whose pages
 * then count several times in RSS (docs/benchmarks.md, third round). Past this size lmdb-js still grows
 * the map.
 */
export const MAP_SIZE_BYTES = 64 * 1024 ** 3;
/** Databases in a store's environment: `kv` and `meta`, with room to spare. */
export const MAX_DBS = 4;
