import { randomUUID } from 'node:crypto';
import { abortError, Kvs2Error } from '../../src/errors.js';
import { murmur2 } from '../../src/log/kafka/murmur2-partitioner.js';
import type { Log, LogBatch, LogPosition, LogRecord, LogWrite, TentativeAppend } from '../../src/log/log.js';
import type { Offsets } from '../../src/offsets.js';

export interface MemoryLogOptions {
  /** Partitions; keys are spread over them as Kafka's default partitioner does (default 1). */
  readonly partitions?: number;
  /** Whether the log keeps history (a compacted topic) or discards what is released (default true). */
  readonly retainsHistory?: boolean;
  /** Most records one read batch carries (default 1000). */
  readonly maxBatchRecords?: number;
}

interface PendingAppend {
  readonly release: () => void;
}

/**
 * A complete `Log` held in memory, for unit tests of what sits on top of a log (replica, service,
 * watches) without a disk or a broker. It behaves like the real ones: dense offsets per partition,
 * reads that yield batches as records arrive, start offsets that move on release (when it does not keep
 * history) and LOG_POSITION_LOST / LOG_RECREATED for reads that cannot continue. Tests steer faults
 * through `pauseAppends`, `failAppends` and `recreate`.
 */
export class MemoryLog implements Log {
  readonly description: string;
  readonly retainsHistory: boolean;
  readonly tombstoneRetentionMs = null;

  readonly #partitionCount: number;
  readonly #maxBatchRecords: number;
  /** Per partition, the records from its start offset on. */
  #partitions: LogRecord[][] = [];
  #startOffsets: number[] = [];
  #identity = '';
  #opened = false;
  #closed = false;
  #paused: Set<PendingAppend> | null = null;
  #failure: Kvs2Error | null = null;
  /** Readers parked until a record arrives, the log is recreated or it closes. */
  #wakeReaders: Array<() => void> = [];
  /** Partitions held by an undecided conditional write: appends there wait for its verdict. */
  readonly #holds = new Map<number, Promise<void>>();

  constructor(options: MemoryLogOptions = {}) {
    this.#partitionCount = options.partitions ?? 1;
    this.retainsHistory = options.retainsHistory ?? true;
    this.#maxBatchRecords = options.maxBatchRecords ?? 1000;
    this.description = `in-memory log of ${this.#partitionCount} partition(s)`;
    this.#reset();
  }

  async open(): Promise<string> {
    if (this.#closed) throw new Kvs2Error('SHUTTING_DOWN', `${this.description} is closed`);
    this.#opened = true;
    return this.#identity;
  }

  async reopen(): Promise<string> {
    this.#usable();
    return this.#identity;
  }

  /** Rejects at once, and writes nothing, when the signal has aborted or aborts while appends are paused. */
  async append(key: Buffer, value: Buffer | null, signal?: AbortSignal): Promise<LogPosition> {
    this.#usable();
    if (signal?.aborted) throw abortError(signal, 'append');
    if (this.#paused !== null) await this.#waitForResume(signal);
    this.#usable();
    if (this.#failure !== null) throw this.#failure;
    const partition = this.partitionOf(key);
    await this.#unheld(partition);
    const records = this.#partitions[partition] as LogRecord[];
    const offset = (this.#startOffsets[partition] as number) + records.length;
    records.push({ partition, offset, key: Buffer.from(key), value: value === null ? null : Buffer.from(value) });
    this.#wake();
    return { partition, offset };
  }

  /** Holds the partition, as the real logs do, until commit() appends the records or abort() drops them. */
  async appendTentative(writes: readonly LogWrite[], signal: AbortSignal): Promise<TentativeAppend> {
    this.#usable();
    if (signal.aborted) throw abortError(signal, 'append');
    if (this.#failure !== null) throw this.#failure;
    const partition = this.partitionOf((writes[0] as LogWrite).key);
    if (writes.some(({ key }) => this.partitionOf(key) !== partition)) {
      throw new Kvs2Error('INVALID_ARGUMENT', 'the records of a conditional write must share a partition');
    }
    await this.#unheld(partition);
    const released = Promise.withResolvers<void>();
    this.#holds.set(partition, released.promise);
    const records = this.#partitions[partition] as LogRecord[];
    const offset = (this.#startOffsets[partition] as number) + records.length;
    let decided = false;
    const release = (): void => {
      decided = true;
      this.#holds.delete(partition);
      released.resolve();
    };
    return {
      partition,
      offset,
      commit: async () => {
        if (decided) throw new Kvs2Error('LOG_UNAVAILABLE', 'the conditional write was already decided');
        writes.forEach(({ key, value }, i) => {
          records.push({
            partition,
            offset: offset + i,
            key: Buffer.from(key),
            value: value === null ? null : Buffer.from(value),
          });
        });
        release();
        this.#wake();
      },
      abort: async () => {
        if (!decided) release();
      },
    };
  }

  async #unheld(partition: number): Promise<void> {
    for (let hold = this.#holds.get(partition); hold !== undefined; hold = this.#holds.get(partition)) await hold;
  }

  async endOffsets(): Promise<Offsets> {
    this.#usable();
    return new Map(this.#partitions.map((records, p) => [p, (this.#startOffsets[p] as number) + records.length]));
  }

  async startOffsets(): Promise<Offsets> {
    this.#usable();
    return new Map(this.#startOffsets.map((offset, p) => [p, offset]));
  }

  async *read(from: Offsets, signal: AbortSignal): AsyncIterable<LogBatch> {
    this.#usable();
    const identity = this.#identity;
    const position = this.#startOffsets.map((start, p) => from.get(p) ?? start);
    while (!signal.aborted && !this.#closed) {
      if (this.#identity !== identity) {
        throw new Kvs2Error('LOG_RECREATED', `${this.description} was recreated under the reader`);
      }
      const batch = this.#take(position);
      if (batch === null) {
        await this.#waitForRecords(signal);
        continue;
      }
      yield batch;
    }
  }

  /** Without history, records before these offsets are discarded, as the embedded log does. */
  releaseBefore(offsets: Offsets): void {
    if (this.retainsHistory || this.#closed) return;
    for (const [partition, offset] of offsets) this.truncateBefore(partition, offset);
  }

  /** Fails paused appends and ends reads. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const pending of this.#paused ?? []) pending.release();
    this.#paused = null;
    this.#wake();
  }

  /** The partition a key goes to. */
  partitionOf(key: Buffer): number {
    return (murmur2(key) & 0x7fffffff) % this.#partitionCount;
  }

  /** Appends wait from now on until `resumeAppends` (an abort still rejects them promptly). */
  pauseAppends(): void {
    this.#paused ??= new Set();
  }

  /** Appends waiting for `resumeAppends`. */
  get pausedAppends(): number {
    return this.#paused?.size ?? 0;
  }

  resumeAppends(): void {
    const paused = this.#paused;
    this.#paused = null;
    for (const pending of paused ?? []) pending.release();
  }

  /** Appends fail with this error from now on (null: they succeed again). */
  failAppends(error: Kvs2Error | null): void {
    this.#failure = error;
  }

  /** Drops a partition's records before `offset`, as retention or compaction would. */
  truncateBefore(partition: number, offset: number): void {
    const start = this.#startOffsets[partition];
    const records = this.#partitions[partition];
    if (start === undefined || records === undefined || offset <= start) return;
    const dropped = Math.min(offset - start, records.length);
    records.splice(0, dropped);
    this.#startOffsets[partition] = start + dropped;
  }

  /** Deletes and recreates the log: a new identity, no records, and running reads fail LOG_RECREATED. */
  recreate(): void {
    this.#reset();
    this.#wake();
  }

  #reset(): void {
    // Named as an embedded log's identities are (it stands in for one: no tombstone retention), so that a
    // snapshot of a store built from it names a log kind a snapshot reader knows.
    this.#identity = `embedded:memory-${randomUUID()}`;
    this.#partitions = Array.from({ length: this.#partitionCount }, () => []);
    this.#startOffsets = Array.from({ length: this.#partitionCount }, () => 0);
  }

  /** The records readable from `position` (advanced past them), or null when there are none yet. */
  #take(position: number[]): LogBatch | null {
    const records: LogRecord[] = [];
    const nextOffsets = new Map<number, number>();
    for (let p = 0; p < this.#partitionCount; p++) {
      const start = this.#startOffsets[p] as number;
      const stored = this.#partitions[p] as LogRecord[];
      const at = position[p] as number;
      if (at < start) {
        throw new Kvs2Error(
          'LOG_POSITION_LOST',
          `${this.description}: partition ${p} starts at offset ${start} but offset ${at} was asked for`,
        );
      }
      const room = this.#maxBatchRecords - records.length;
      const taken = stored.slice(at - start, at - start + room);
      if (taken.length === 0) continue;
      records.push(...taken);
      position[p] = at + taken.length;
      nextOffsets.set(p, at + taken.length);
    }
    return records.length === 0 ? null : { records, nextOffsets };
  }

  #waitForResume(signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      const pending: PendingAppend = {
        release: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = (): void => {
        this.#paused?.delete(pending);
        reject(abortError(signal as AbortSignal, 'append'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#paused?.add(pending);
    });
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

  #usable(): void {
    if (this.#closed) throw new Kvs2Error('SHUTTING_DOWN', `${this.description} is closed`);
    if (!this.#opened) throw new Kvs2Error('LOG_UNAVAILABLE', `${this.description} is not open`);
  }
}
