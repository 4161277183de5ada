import type { Offsets } from '../offsets.js';

/** One change to apply: a null value deletes the key. */
export interface StoreWrite {
  readonly key: Buffer;
  readonly value: Buffer | null;
  /** The key's version after this write: the log position of its record (offset + 1 in its partition). */
  readonly version: number;
}

/** What the store knows about the log it was built from, saved with the data in every transaction. */
export interface StoreProgress {
  /** Identity of the log the data came from; null for a store that never applied anything. */
  readonly logIdentity: string | null;
  /** Per partition, the next log offset to apply. */
  readonly appliedOffsets: Offsets;
  /** Wall-clock milliseconds when the replica last knew itself caught up with the log; null if never. */
  readonly caughtUpAt: number | null;
}

export interface Applied {
  /** Resolves once the applied transaction is synced to disk. */
  readonly flushed: Promise<void>;
}

/** One key of a scan page: its value (undefined for a keys-only scan) and its version (versioned-value.ts). */
export interface ScanItem {
  readonly key: Buffer;
  readonly value: Buffer | undefined;
  readonly version: number;
}

/** A page of a scan, in key order. */
export interface ScanPage {
  readonly items: ReadonlyArray<ScanItem>;
  /** True when keys remain in the range after the last item. */
  readonly more: boolean;
}

export interface ScanRange {
  /** First key: inclusive, or exclusive when `startExclusive` (the last key of a previous page). */
  readonly start: Buffer;
  readonly startExclusive: boolean;
  /** End key, exclusive; undefined for no upper bound. */
  readonly end: Buffer | undefined;
  /** Most items in the page. */
  readonly limit: number;
  /** Stop the page once keys and values add up to this many bytes (the first item is always taken). */
  readonly maxBytes: number;
  readonly keysOnly: boolean;
}

/** The read side, which is all the service needs. */
export interface KeyValueReader {
  /** The value of `key` in a Buffer of its own, or undefined; its version is then `lastVersion`. */
  get(key: Buffer): Buffer | undefined;
  /**
   * The version of the value the last get() returned (0 when it found nothing), until the next read: a
   * field read right after get(), so that a lookup allocates nothing for its version (as lmdb-js's own
   * getLastVersion()).
   */
  readonly lastVersion: number;
  /** One page of keys (and values) in byte order, read from one consistent snapshot. */
  scan(range: ScanRange): ScanPage;
}

/** How big the store is, cheap enough to ask on every status call or metrics scrape. */
export interface StoreStats {
  /** Keys held. */
  readonly keys: number;
  /** Bytes the store's files take on disk. */
  readonly bytesOnDisk: number;
}

/** What a store written before versions (store format 1) is turned into: see Store.upgradeUnversioned(). */
export type UnversionedUpgrade =
  /**
   * Every value gets the applied offset of partition 0 as its version: a stand-in that is at least each
   * key's real version, lower than any later write's, and the same for every key of one state. Right for a
   * log of one partition that keeps no history (the embedded log), where no other node can disagree.
   */
  | 'assign-applied-offset'
  /** Everything is deleted, to be rebuilt from a log that keeps history (Kafka): versions are its offsets. */
  | 'clear';

/** What upgradeUnversioned() did. */
export interface UnversionedUpgradeDone {
  readonly upgrade: UnversionedUpgrade;
  /** Keys the store held. */
  readonly keys: number;
  /** The version every key got ('assign-applied-offset'); null when cleared. */
  readonly version: number | null;
}

/** The replica is the only writer; `clear` is never called while other writes are pending. */
export interface Store extends KeyValueReader {
  readonly description: string;
  /**
   * True while the store holds values of store format 1, written by a kvs2 before versions: nothing reads
   * or writes it (STORE_UNAVAILABLE) until upgradeUnversioned() has run. The store cannot choose how by
   * itself, since that depends on the log it was built from: its replica does (replica/store-upgrade.ts).
   */
  readonly unversioned: boolean;
  /**
   * Turns a format-1 store into format 2, synchronously (before anything reads it), resumably (a crash
   * midway resumes at the next open) and at once for readers in other processes (they see format 2 only
   * when it is done).
   */
  upgradeUnversioned(upgrade: UnversionedUpgrade): UnversionedUpgradeDone;
  progress(): StoreProgress;
  stats(): StoreStats;
  /**
   * Applies writes and the offsets they bring the store to, in one transaction. Resolves once the
   * transaction is committed (visible to readers), with a promise for when it is also on disk.
   */
  apply(writes: readonly StoreWrite[], appliedOffsets: Offsets, logIdentity: string): Promise<Applied>;
  /**
   * Makes reads see everything committed so far, and nothing committed later until the next call. The
   * replica calls it just before it publishes a new watermark: a read then never returns data its own
   * token (the watermark) does not name. (lmdb-js alone renews its read transaction at each turn of the
   * event loop, and an apply's commit lands on lmdb-js's writer thread before the replica hears of it.)
   */
  advanceReads(): void;
  /** Records that the replica was caught up at this time; saved with the next transaction. */
  markCaughtUp(at: number): Promise<void>;
  /** Resolves once every committed transaction is on disk. */
  flushed(): Promise<void>;
  /** Deletes all data and progress, for a rebuild from the start of the log. */
  clear(): Promise<void>;
  close(): Promise<void>;
}
