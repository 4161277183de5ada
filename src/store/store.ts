import type { Offsets } from '../offsets.js';

/** One change to apply: a null value deletes the key. */
export interface StoreWrite {
  readonly key: Buffer;
  readonly value: Buffer | null;
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

/** A page of a scan, in key order. */
export interface ScanPage {
  readonly items: ReadonlyArray<{ readonly key: Buffer; readonly value: Buffer | undefined }>;
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
  get(key: Buffer): Buffer | undefined;
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

/** The replica is the only writer; `clear` is never called while other writes are pending. */
export interface Store extends KeyValueReader {
  readonly description: string;
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
