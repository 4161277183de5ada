import { randomUUID } from 'node:crypto';
import { type Database, open, type RootDatabase } from 'lmdb';
import { raceAbort } from '../../abort.js';
import { abortError, describeError, Kvs2Error } from '../../errors.js';
import { type CommitPromise, untilFlushed } from '../../lmdb/durability.js';
import type { Offsets } from '../../offsets.js';
import type { Log, LogBatch, LogPosition, LogRecord } from '../log.js';
import { SignalGroups } from '../signal-groups.js';
import { decodeRecord, encodeRecord } from './record-codec.js';

/** An append's caller, told at once if its signal aborts (a promise settles once: later calls are no-ops). */
interface PendingAppend {
  readonly resolve: (position: LogPosition) => void;
  readonly reject: (error: unknown) => void;
}

/** The embedded log has a single partition. */
const PARTITION = 0;

export interface EmbeddedLogOptions {
  /** Folder of the log's LMDB environment. */
  readonly dir: string;
  /** Most records one read batch carries. */
  readonly maxBatchRecords?: number;
  /** Most bytes (keys + values) one read batch carries, unless a single record is larger. */
  readonly maxBatchBytes?: number;
  /**
   * How many applied records to keep after the store has them, so that a watch can resume from a recent
   * token (default 10,000). Older ones are deleted.
   */
  readonly retainRecords?: number;
}

/**
 * A write-ahead log on LMDB, used when no Kafka is configured. Records are keyed by offset. Every append
 * is an LMDB put; lmdb-js gathers all puts of one event-loop turn into one transaction, so concurrent
 * appends share one commit and one disk sync (group commit). An append resolves only once its commit is
 * synced, and readers only see synced records, so nothing a reader applied can vanish in a crash.
 *
 * Records the store has durably applied are deleted (releaseBefore), except the most recent ones that
 * watches may replay, so the log stays small; the store is then the only copy, which is why this log
 * does not retain history.
 */
export class EmbeddedLog implements Log {
  readonly description: string;
  readonly retainsHistory = false;
  readonly tombstoneRetentionMs = null;

  readonly #dir: string;
  readonly #maxBatchRecords: number;
  readonly #maxBatchBytes: number;
  readonly #retainRecords: number;
  #env: RootDatabase | undefined;
  #records: Database<Buffer, number> | undefined;
  #meta: Database<unknown, string> | undefined;
  /** Offset the next append gets. */
  #nextOffset = 0;
  /** Every offset below this is synced to disk (or was never assigned because its append failed). */
  #durableEnd = 0;
  /** Offsets below this have been released and deleted. */
  #startOffset = 0;
  /** Readers parked until more records are durable. */
  #wakeReaders: Array<() => void> = [];
  #closing = false;
  /** Settles once open() first succeeds, or close() is called: appends made before wait for it. */
  readonly #opened = Promise.withResolvers<void>();
  #identity = '';
  /** Appends whose callers still wait, by signal: an abort rejects them at once. */
  readonly #bySignal = new SignalGroups<PendingAppend>((append, signal) =>
    append.reject(abortError(signal, `appending to ${this.description}`)),
  );

  constructor(options: EmbeddedLogOptions) {
    this.#dir = options.dir;
    this.#maxBatchRecords = options.maxBatchRecords ?? 10_000;
    this.#maxBatchBytes = options.maxBatchBytes ?? 16 * 1024 * 1024;
    this.#retainRecords = options.retainRecords ?? 10_000;
    this.description = `embedded log in ${options.dir}`;
    this.#opened.promise.catch(() => {});
  }

  async open(): Promise<string> {
    try {
      const env = open({ path: this.#dir, maxDbs: 4, separateFlushed: true });
      this.#env = env;
      this.#records = env.openDB<Buffer, number>({ name: 'records', encoding: 'binary' });
      this.#meta = env.openDB<unknown, string>({ name: 'meta' });
      let identity = this.#meta.get('identity');
      if (typeof identity !== 'string') {
        identity = randomUUID();
        await untilFlushed(this.#meta.put('identity', identity) as CommitPromise<boolean>);
      }
      const start = this.#meta.get('startOffset');
      this.#startOffset = typeof start === 'number' ? start : 0;
      let last: number | undefined;
      for (const key of this.#records.getKeys({ reverse: true, limit: 1 })) last = key;
      this.#nextOffset = last === undefined ? this.#startOffset : Math.max(last + 1, this.#startOffset);
      this.#durableEnd = this.#nextOffset;
      this.#identity = `embedded:${String(identity)}`;
      this.#opened.resolve();
      return this.#identity;
    } catch (error) {
      // Leaves nothing open, so that open() can be tried again.
      const env = this.#env;
      this.#env = undefined;
      this.#records = undefined;
      this.#meta = undefined;
      await env?.close().catch(() => {});
      throw new Kvs2Error('LOG_UNAVAILABLE', `cannot open ${this.description}: ${describeError(error)}`, {
        cause: error,
      });
    }
  }

  /** The embedded log cannot be recreated under a running node: it is the same log. */
  async reopen(): Promise<string> {
    this.#openRecords();
    return this.#identity;
  }

  /**
   * Once queued, the put commits with its transaction whatever happens to the signal; an abort only
   * tells the caller at once instead of after the sync (the outcome is then unknown to it).
   */
  append(key: Buffer, value: Buffer | null, signal: AbortSignal): Promise<LogPosition> {
    if (this.#closing) return Promise.reject(new Kvs2Error('SHUTTING_DOWN', `${this.description} is closing`));
    if (signal.aborted) return Promise.reject(abortError(signal, `appending to ${this.description}`));
    const records = this.#records;
    if (records === undefined) return this.#afterOpen(signal, () => this.append(key, value, signal));
    const written = this.#write(records, key, value);
    return new Promise<LogPosition>((resolve, reject) => {
      const pending: PendingAppend = { resolve, reject };
      this.#bySignal.add(signal, pending);
      written.then(
        (position) => {
          this.#bySignal.delete(signal, pending);
          resolve(position);
        },
        (error: unknown) => {
          this.#bySignal.delete(signal, pending);
          reject(error);
        },
      );
    });
  }

  async endOffsets(signal: AbortSignal): Promise<Offsets> {
    if (signal.aborted) throw abortError(signal, `reading the end of ${this.description}`);
    if (this.#records === undefined) return this.#afterOpen(signal, () => this.endOffsets(signal));
    return new Map([[PARTITION, this.#durableEnd]]);
  }

  /** A node listens before its log is open: calls made meanwhile wait for the open, within their signal. */
  async #afterOpen<T>(signal: AbortSignal, then: () => Promise<T>): Promise<T> {
    await raceAbort(this.#opened.promise, signal, `waiting for ${this.description} to open`);
    return then();
  }

  async #write(records: Database<Buffer, number>, key: Buffer, value: Buffer | null): Promise<LogPosition> {
    const offset = this.#nextOffset++;
    try {
      await untilFlushed(records.put(offset, encodeRecord(key, value)) as CommitPromise<boolean>);
    } catch (error) {
      throw new Kvs2Error('LOG_UNAVAILABLE', `${this.description}: append failed: ${describeError(error)}`, {
        cause: error,
      });
    } finally {
      // Commits complete in order, so every offset up to this one is settled too.
      if (offset + 1 > this.#durableEnd) {
        this.#durableEnd = offset + 1;
        this.#wake();
      }
    }
    return { partition: PARTITION, offset };
  }

  async startOffsets(): Promise<Offsets> {
    this.#openRecords();
    return new Map([[PARTITION, this.#startOffset]]);
  }

  async *read(from: Offsets, signal: AbortSignal): AsyncIterable<LogBatch> {
    const records = this.#openRecords();
    let position = from.get(PARTITION) ?? this.#startOffset;
    if (position < this.#startOffset) {
      throw new Kvs2Error(
        'LOG_POSITION_LOST',
        `${this.description} starts at offset ${this.#startOffset} but offset ${position} was asked for`,
      );
    }
    while (!signal.aborted && !this.#closing) {
      const end = this.#durableEnd;
      if (position >= end) {
        await this.#waitForRecords(signal);
        continue;
      }
      const batch: LogRecord[] = [];
      let bytes = 0;
      let next = position;
      for (const { key: offset, value } of records.getRange({ start: position, end, limit: this.#maxBatchRecords })) {
        const { key, value: recordValue } = decodeRecord(value, offset);
        batch.push({ partition: PARTITION, offset, key, value: recordValue });
        next = offset + 1;
        bytes += value.length;
        if (bytes >= this.#maxBatchBytes) break;
      }
      // A full range means the batch reached `end`; offsets whose append failed leave gaps to skip.
      if (batch.length < this.#maxBatchRecords && bytes < this.#maxBatchBytes) next = end;
      position = next;
      yield { records: batch, nextOffsets: new Map([[PARTITION, next]]) };
    }
  }

  releaseBefore(offsets: Offsets): void {
    const upTo = Math.min(offsets.get(PARTITION) ?? this.#startOffset, this.#durableEnd) - this.#retainRecords;
    const records = this.#records;
    const meta = this.#meta;
    if (records === undefined || meta === undefined || upTo <= this.#startOffset || this.#closing) return;
    const from = this.#startOffset;
    this.#startOffset = upTo;
    // Offsets are dense, so the deleted range needs no read. The deletes join the next commit; they need
    // not be synced before anything else happens, since replaying an applied record is harmless.
    records
      .batch(() => {
        for (let offset = from; offset < upTo; offset++) records.remove(offset);
        meta.put('startOffset', upTo);
      })
      .catch(() => {
        // A failed release only leaves the records in place; the next release retries them.
        if (this.#startOffset === upTo) this.#startOffset = from;
      });
  }

  async close(): Promise<void> {
    this.#closing = true;
    this.#opened.reject(new Kvs2Error('SHUTTING_DOWN', `${this.description} is closing`));
    this.#wake();
    const env = this.#env;
    if (env === undefined) return;
    this.#env = undefined;
    this.#records = undefined;
    this.#meta = undefined;
    await env.flushed;
    await env.close();
  }

  #openRecords(): Database<Buffer, number> {
    if (this.#records === undefined) {
      throw new Kvs2Error('LOG_UNAVAILABLE', `${this.description} is not open`);
    }
    return this.#records;
  }

  #waitForRecords(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        signal.removeEventListener('abort', wake);
        resolve();
      };
      signal.addEventListener('abort', wake, { once: true });
      this.#wakeReaders.push(wake);
    });
  }

  #wake(): void {
    const readers = this.#wakeReaders;
    this.#wakeReaders = [];
    for (const wake of readers) wake();
  }
}
