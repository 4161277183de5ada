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
