import type { StoreProgress } from './store.js';

/** One key, its value and its version, as a snapshot reads them and a loader writes them. */
export interface StoreEntry {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  /** The key's version (versioned-value.ts): at least 1. */
  readonly version: number;
}

/**
 * A consistent, read-only view of a whole store: its progress and every entry, all from one read
 * transaction, so the entries are exactly what the store held at `progress.appliedOffsets`. The store
 * keeps serving reads and applying writes meanwhile; the transaction only pins the pages it sees (LMDB
 * cannot reuse pages freed after it began until it ends, so a store under writes grows while a snapshot
 * is open). Its owner must close it, also when abandoning it half-read.
 */
export interface StoreSnapshot extends Disposable {
  /** The store's format version (store-format.ts). */
  readonly storeFormat: number;
  readonly progress: StoreProgress;
  /** How many entries `entries()` yields. */
  readonly keys: number;
  /**
   * Every entry in key order (bytewise), read lazily from the transaction as the caller pulls: never the
   * whole store in memory. Each entry's bytes are its own copy. Can be iterated once; throws
   * STORE_UNAVAILABLE once the snapshot (or its store) is closed.
   */
  entries(): IterableIterator<StoreEntry>;
  /** Ends the read transaction. Safe to call more than once. */
  close(): void;
}

/** What can take a snapshot of itself (LmdbStore): the part of a store a snapshot RPC needs. */
export interface SnapshotSource {
  /** A consistent snapshot of the whole store; the caller closes it. STORE_UNAVAILABLE once closed. */
  snapshot(): StoreSnapshot;
}

/** What can copy its own file (LmdbStore): the part of a store a store image (the Snapshot RPC's other format) needs. */
export interface StoreFileSource {
  /** The folder the store's data.mdb lies in (a copy is made in a folder inside it). */
  readonly dir: string;
  /**
   * Writes a consistent, compacted copy of the store (LMDB's mdb_env_copy2 with MDB_CP_COMPACT: pages in
   * key order, no free pages) as `<target>/data.mdb`; `target` must exist and hold no data.mdb. Runs off the
   * event loop, from one read transaction: reads and the replica go on meanwhile.
   */
  copyCompacted(target: string): Promise<void>;
}
