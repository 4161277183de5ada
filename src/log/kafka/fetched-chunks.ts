import type { LogBatch, LogRecord } from '../log.js';
import { offsetToNumber } from './kafka-offsets.js';

/** Records of one partition fetched and not yet handed to the reader's caller. */
export interface Chunk {
  readonly partition: number;
  readonly records: LogRecord[];
  readonly nextOffset: bigint;
  /** Key and value bytes of the records. */
  readonly bytes: number;
}

/**
 * The hand-over between fetch loops (one per broker) and the caller of read(): loops add chunks, the
 * caller takes them as batches. Fetching pauses while more than `maxBufferedBytes` wait, so a slow
 * caller (a store writing to disk) holds the loops back instead of filling memory.
 */
export class FetchedChunks {
  readonly #maxBufferedBytes: number;
  readonly #maxBatchBytes: number;
  #chunks: Chunk[] = [];
  #bufferedBytes = 0;
  #wakeTaker: (() => void) | undefined;
  #wakeFetchers: Array<() => void> = [];

  constructor(maxBufferedBytes: number, maxBatchBytes: number) {
    this.#maxBufferedBytes = maxBufferedBytes;
    this.#maxBatchBytes = maxBatchBytes;
  }

  get isEmpty(): boolean {
    return this.#chunks.length === 0;
  }

  add(chunk: Chunk): void {
    this.#chunks.push(chunk);
    this.#bufferedBytes += chunk.bytes;
    this.#wakeTaker?.();
  }

  /**
   * Merges what was fetched so far into one batch: large under load, a few records when idle. Whole
   * chunks only, up to `maxBatchBytes` (one chunk may be larger), in the order they were fetched, so
   * each partition's records stay in log order.
   */
  take(): LogBatch {
    let count = 0;
    let bytes = 0;
    for (const chunk of this.#chunks) {
      if (count > 0 && bytes + chunk.bytes > this.#maxBatchBytes) break;
      bytes += chunk.bytes;
      count++;
    }
    const chunks = this.#chunks.splice(0, count);
    this.#bufferedBytes -= bytes;
    if (this.#bufferedBytes < this.#maxBufferedBytes) this.#resumeFetchers();
    const records: LogRecord[] = [];
    const nextOffsets = new Map<number, number>();
    for (const chunk of chunks) {
      for (const record of chunk.records) records.push(record);
      nextOffsets.set(chunk.partition, offsetToNumber(chunk.nextOffset, `partition ${chunk.partition}`));
    }
    return { records, nextOffsets };
  }

  /** Resolves when a chunk is added or wakeAll() is called. */
  whenAdded(): Promise<void> {
    return new Promise((resolve) => {
      this.#wakeTaker = () => {
        this.#wakeTaker = undefined;
        resolve();
      };
    });
  }

  /** Resolves once there is room for more fetched data (or wakeAll() is called). */
  whenRoom(): Promise<void> {
    if (this.#bufferedBytes < this.#maxBufferedBytes) return Promise.resolve();
    return new Promise((resolve) => this.#wakeFetchers.push(resolve));
  }

  /** Wakes everyone waiting: the reader is stopping. */
  wakeAll(): void {
    this.#wakeTaker?.();
    this.#resumeFetchers();
  }

  #resumeFetchers(): void {
    const waiting = this.#wakeFetchers;
    this.#wakeFetchers = [];
    for (const resume of waiting) resume();
  }
}
