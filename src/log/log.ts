/**
 * The log is the source of truth: writes are appended to it, and every node's replica reads it back into
 * the local store. Two implementations fit this interface: the embedded log (one partition, on local disk)
 * and a Kafka topic (many partitions, shared by all nodes).
 *
 * Offsets are JavaScript numbers: exact up to 2^53, which at a million records a second lasts centuries.
 */
import type { Offsets } from '../offsets.js';

export interface LogRecord {
  readonly partition: number;
  readonly offset: number;
  /** Null when the record has no key: Kafka allows it, kvs2 never writes it, replicas skip it. */
  readonly key: Buffer | null;
  /** Null is a tombstone: the key is deleted. */
  readonly value: Buffer | null;
}

export interface LogBatch {
  /** Records in log order within each partition. */
  readonly records: readonly LogRecord[];
  /**
   * For each partition this batch covers, the offset to read next. It can lie past the last record's
   * offset + 1: compaction leaves gaps and transaction markers take offsets without carrying records.
   */
  readonly nextOffsets: Offsets;
}

/** Where an appended record landed. */
export interface LogPosition {
  readonly partition: number;
  readonly offset: number;
}

/** One record of a conditional write: a null value deletes the key. */
export interface LogWrite {
  readonly key: Buffer;
  readonly value: Buffer | null;
}

/**
 * Records written to one partition of the log but not yet decided (a conditional write between its produce
 * and its verdict). Readers see them only after commit(), never after abort(), and no reader of the
 * partition gets past `offset` until one of the two: Kafka's read_committed readers stop at the first offset
 * of the earliest open transaction (its last stable offset); the embedded log's single writer holds its end.
 * So once a replica has applied everything below `offset`, no other write can land between what it reads
 * there and this write: the basis of compare-and-set (docs/cas-on-kafka.md).
 */
export interface TentativeAppend {
  readonly partition: number;
  /** The first record's offset; record i of the append is at `offset + i`. */
  readonly offset: number;
  /**
   * Makes the records visible. Resolves once the verdict is durable (Kafka: in the transaction log).
   * Rejects with LOG_OUTCOME_UNKNOWN when it cannot tell whether the commit took effect (a lost answer, a
   * fenced producer, a timeout): the caller learns the truth by reading the partition past `offset`.
   */
  commit(): Promise<void>;
  /** Discards the records. Never rejects: an abort that cannot be sent is left to the transaction timeout. */
  abort(): Promise<void>;
}

export interface Log {
  /** What this log is, for people: "embedded log in /var/lib/kvs2/log", "Kafka topic kvs2 at ...". */
  readonly description: string;

  /**
   * Whether the log keeps every key's latest record for good, so that a store can be rebuilt from it.
   * A compacted Kafka topic does; the embedded log does not, since it discards what the store has applied.
   */
  readonly retainsHistory: boolean;

  /**
   * Opens the log (creating it if needed) and returns its identity, a string that changes when the log
   * is deleted and recreated (for Kafka: the topic id). Call it before anything else; it may be called
   * again after it failed. append() and endOffsets() called before it has succeeded wait for it, within
   * their signal (a node listens while it waits for its log).
   */
  open(signal?: AbortSignal): Promise<string>;

  /**
   * After a read failed with LOG_RECREATED: adopts the log as it is now and returns its new identity.
   * Reads and offsets from then on refer to the new log.
   */
  reopen(signal?: AbortSignal): Promise<string>;

  /**
   * How long deletes (tombstones) stay readable before compaction may remove them, in milliseconds; null
   * when they never vanish unread. A replica away for longer may have missed deletes. Known after open().
   */
  readonly tombstoneRetentionMs: number | null;

  /**
   * Appends one record (a null value deletes the key) and resolves once it is durable: synced to disk
   * for the embedded log, acknowledged by the brokers for Kafka. Rejects with a Kvs2Error.
   *
   * The signal is the append's only deadline: the log retries what can be retried (a broker down, a
   * leader moving) until the record is durable or the signal aborts. When it aborts, the append rejects
   * at once with the abort's error (`abortError`), and a record not yet handed to the disk or the network
   * is never written. One already handed over may still land: the caller cannot know (see the README).
   */
  append(key: Buffer, value: Buffer | null, signal: AbortSignal): Promise<LogPosition>;

  /** The partition a key's records go to (every writer of the log must agree on it). */
  partitionOf(key: Buffer): number;

  /**
   * Writes records that all go to one partition (partitionOf) tentatively: see TentativeAppend. Resolves
   * once they have their offsets and hold the partition; rejects with a Kvs2Error (nothing was written, or
   * what was written is aborted). The caller must call commit() or abort() promptly: the partition's readers
   * wait meanwhile, and Kafka aborts a transaction left open past its timeout.
   */
  appendTentative(records: readonly LogWrite[], signal: AbortSignal): Promise<TentativeAppend>;

  /**
   * For every partition, the offset the next appended record will get: all before it are readable.
   * Rejects at once with the abort's error when the signal aborts.
   */
  endOffsets(signal: AbortSignal): Promise<Offsets>;

  /** For every partition, the oldest offset still readable. */
  startOffsets(signal?: AbortSignal): Promise<Offsets>;

  /**
   * Reads every partition from the given offsets (partitions not named start at their start offset),
   * yielding batches as records become readable, until the signal aborts. Throws a Kvs2Error with code
   * LOG_RECREATED when the log's identity changes under it, and LOG_POSITION_LOST when an offset asked
   * for is no longer readable (removed by retention); other failures are retried inside or thrown as
   * LOG_UNAVAILABLE.
   */
  read(from: Offsets, signal: AbortSignal): AsyncIterable<LogBatch>;

  /**
   * Tells the log that everything before these offsets is durably applied to the store. A log that does
   * not retain history may discard it; a Kafka topic ignores this.
   */
  releaseBefore(offsets: Offsets): void;

  /** Flushes and closes; pending appends finish or fail first. */
  close(): Promise<void>;
}
