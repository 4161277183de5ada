import { randomUUID } from 'node:crypto';
import { constants as fsConstants, mkdirSync, readSync } from 'node:fs';
import { type FileHandle, open as openFile, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { raceAbort } from '../../abort.js';
import { abortError, describeError, isKvs2Error, Kvs2Error } from '../../errors.js';
import type { Offsets } from '../../offsets.js';
import type { Log, LogBatch, LogPosition, LogRecord, LogWrite, TentativeAppend } from '../log.js';
import { SignalGroups } from '../signal-groups.js';
import { checkFrame, decodeFrameRecords, encodeFrame, type FrameRecordVisitor, isFrameFault } from './frame-codec.js';
import { hasLmdbLog, migrateLmdbLog, removeLmdbLog } from './lmdb-log-migration.js';
import { adoptLogFormat } from './log-format.js';
import { listSegments, type SegmentIndex, scanSegment, segmentFileName } from './segment-scan.js';

/** An append waiting for its group commit. A promise settles once: an abort's early reject wins. */
interface QueuedAppend {
  readonly kind: 'append';
  readonly key: Buffer;
  readonly value: Buffer | null;
  readonly signal: AbortSignal;
  readonly resolve: (position: LogPosition) => void;
  readonly reject: (error: unknown) => void;
}

/** A conditional write waiting for the writer, which then holds the log's end for it until its verdict. */
interface QueuedTentative {
  readonly kind: 'tentative';
  readonly records: readonly LogWrite[];
  readonly signal: AbortSignal;
  readonly resolve: (append: TentativeAppend) => void;
  readonly reject: (error: unknown) => void;
}

type Queued = QueuedAppend | QueuedTentative;

/**
 * How long the writer holds the log's end for an undecided conditional write before it discards it: what
 * Kafka's transaction timeout is to a transactional producer that went quiet. A verdict takes a replica's
 * catch-up and a store read, milliseconds; every append waits meanwhile.
 */
const DEFAULT_TENTATIVE_TIMEOUT_MS = 5000;

/** A segment file and where its frames lie. The handle serves the writer (last segment) and every reader. */
interface OpenSegment {
  readonly index: SegmentIndex;
  readonly file: FileHandle;
}

/** The embedded log has a single partition. */
const PARTITION = 0;
export const IDENTITY_FILE = 'identity';
/**
 * Segments are written with O_DSYNC: a write returns once its data (and the file size) is on disk, as a
 * write followed by fdatasync would, but in one system call, so a group commit costs one hand-off to the
 * thread pool instead of two.
 */
const SEGMENT_OPEN = fsConstants.O_RDWR | fsConstants.O_DSYNC;
const SEGMENT_CREATE = SEGMENT_OPEN | fsConstants.O_CREAT | fsConstants.O_EXCL;

export interface EmbeddedLogOptions {
  /** Folder of the log's segment files. */
  readonly dir: string;
  /** Most records one read batch carries. */
  readonly maxBatchRecords?: number;
  /** Most bytes (keys + values) one read batch carries, unless a single record is larger. */
  readonly maxBatchBytes?: number;
  /**
   * How many applied records to keep after the store has them, so that a watch can resume from a recent
   * token (default 10,000). Segments holding only older ones are deleted.
   */
  readonly retainRecords?: number;
  /** A new segment file begins once the last one holds this many bytes (default 16 MiB). */
  readonly segmentBytes?: number;
  /** How long a conditional write may stay undecided before it is discarded (default 5 s). */
  readonly tentativeTimeoutMs?: number;
}

/**
 * A write-ahead log in append-only segment files, used when no Kafka is configured (the design of Kafka's
 * log and Redis's append-only file). Appends queue; one writer takes everything queued, writes it as one
 * frame at the end of the last segment, synced (O_DSYNC), then resolves those appends, while the next ones
 * queue behind the sync (group commit: one disk sync for all appends that arrived meanwhile). Readers only
 * see synced frames, so nothing a reader applied can vanish in a crash; a crash can only tear the frame
 * being written, which open() cuts off (see segment-scan.ts).
 *
 * Segments whose records the store has durably applied are deleted (releaseBefore), except those holding
 * the most recent records that watches may replay, so the log stays small; the store is then the only
 * copy, which is why this log does not retain history.
 *
 * A folder holding the earlier format (an LMDB database keyed by offset) is migrated on open; a folder in a
 * format version this kvs2 does not read (log-format.ts) is refused.
 */
export class EmbeddedLog implements Log {
  readonly description: string;
  readonly retainsHistory = false;
  readonly tombstoneRetentionMs = null;

  readonly #dir: string;
  readonly #maxBatchRecords: number;
  readonly #maxBatchBytes: number;
  readonly #retainRecords: number;
  readonly #segmentBytes: number;
  readonly #tentativeTimeoutMs: number;
  /** Oldest first; the last one is written to. Empty until open() succeeds and after close(). */
  #segments: OpenSegment[] = [];
  /** Offset the next frame starts at. */
  #nextOffset = 0;
  /** Every offset below this is synced to disk. */
  #durableEnd = 0;
  /**
   * Offsets below this were released: no longer readable, although the segment holding them may remain
   * until all of its records are released. Not saved: after a restart the log starts at its first segment.
   */
  #releasedBefore = 0;
  /** Appends and conditional writes not yet handed to the writer, in arrival order. */
  #queue: Queued[] = [];
  /** The writer's run, while it has frames to write. */
  #writer: Promise<void> | undefined;
  /** Set once a write or sync failed: what reached the disk is then unknown, so nothing is written after. */
  #failure: Kvs2Error | undefined;
  /** Readers parked until more records are durable. */
  #wakeReaders: Array<() => void> = [];
  #closing = false;
  /** Settles once open() first succeeds, or close() is called: appends made before wait for it. */
  readonly #opened = Promise.withResolvers<void>();
  #identity = '';
  /** Appends whose callers still wait, by signal: an abort rejects them at once. */
  readonly #bySignal = new SignalGroups<Queued>((append, signal) =>
    append.reject(abortError(signal, `appending to ${this.description}`)),
  );

  constructor(options: EmbeddedLogOptions) {
    this.#dir = options.dir;
    this.#maxBatchRecords = options.maxBatchRecords ?? 10_000;
    this.#maxBatchBytes = options.maxBatchBytes ?? 16 * 1024 * 1024;
    this.#retainRecords = options.retainRecords ?? 10_000;
    this.#segmentBytes = options.segmentBytes ?? 16 * 1024 * 1024;
    this.#tentativeTimeoutMs = options.tentativeTimeoutMs ?? DEFAULT_TENTATIVE_TIMEOUT_MS;
    this.description = `embedded log in ${options.dir}`;
    this.#opened.promise.catch(() => {});
  }

  async open(): Promise<string> {
    if (this.#segments.length > 0) return this.#identity;
    try {
      mkdirSync(this.#dir, { recursive: true });
      await adoptLogFormat(this.#dir, this.description, () => this.#syncDir());
      let identity = await this.#readIdentity();
      if (identity === undefined && hasLmdbLog(this.#dir)) {
        // Segments beside the LMDB files and no identity: a migration a crash interrupted. Start it over.
        for (const segment of listSegments(this.#dir)) await rm(segment.path);
        identity = (await migrateLmdbLog(this.#dir, () => this.#syncDir())) ?? randomUUID();
        await this.#writeIdentity(identity);
      }
      if (identity === undefined) {
        if (listSegments(this.#dir).length > 0) {
          throw new Kvs2Error('INCONSISTENT_STATE', `${this.description} has segments but no ${IDENTITY_FILE} file`);
        }
        identity = randomUUID();
        await this.#writeIdentity(identity);
      }
      await removeLmdbLog(this.#dir);
      await this.#openSegments();
      this.#identity = `embedded:${identity}`;
      this.#opened.resolve();
      return this.#identity;
    } catch (error) {
      // Leaves nothing open, so that open() can be tried again.
      const segments = this.#segments;
      this.#segments = [];
      for (const segment of segments) await segment.file.close().catch(() => {});
      if (isKvs2Error(error) && (error.code === 'INCONSISTENT_STATE' || error.code === 'DATA_FORMAT_UNSUPPORTED')) {
        throw error;
      }
      throw new Kvs2Error('LOG_UNAVAILABLE', `cannot open ${this.description}: ${describeError(error)}`, {
        cause: error,
      });
    }
  }

  /** The embedded log cannot be recreated under a running node: it is the same log. */
  async reopen(): Promise<string> {
    this.#openSegmentsOrThrow();
    return this.#identity;
  }

  /**
   * Queued until the writer takes it: a signal that aborts before then keeps the record from being
   * written at all. Once taken, the record is written with its frame whatever happens to the signal; an
   * abort only tells the caller at once instead of after the sync (the outcome is then unknown to it).
   */
  append(key: Buffer, value: Buffer | null, signal: AbortSignal): Promise<LogPosition> {
    if (this.#closing) return Promise.reject(new Kvs2Error('SHUTTING_DOWN', `${this.description} is closing`));
    if (signal.aborted) return Promise.reject(abortError(signal, `appending to ${this.description}`));
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    if (this.#segments.length === 0) return this.#afterOpen(signal, () => this.append(key, value, signal));
    return new Promise<LogPosition>((resolve, reject) => {
      this.#enqueue({ kind: 'append', key, value, signal, resolve, reject });
    });
  }

  partitionOf(): number {
    return PARTITION;
  }

  /**
   * Queued like an append; when the writer reaches it, the records get the next offsets and the writer
   * waits for the verdict before it writes anything else, so every record before them is durable and
   * readable and nothing lands between. commit() writes them as one frame; abort() (or no verdict within
   * the timeout) drops them, and the offsets go to whatever comes next: no reader ever saw them.
   */
  appendTentative(records: readonly LogWrite[], signal: AbortSignal): Promise<TentativeAppend> {
    if (this.#closing) return Promise.reject(new Kvs2Error('SHUTTING_DOWN', `${this.description} is closing`));
    if (signal.aborted) return Promise.reject(abortError(signal, `appending to ${this.description}`));
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    if (records.length === 0) {
      return Promise.reject(new Kvs2Error('INVALID_ARGUMENT', 'a conditional write needs at least one record'));
    }
    if (this.#segments.length === 0) return this.#afterOpen(signal, () => this.appendTentative(records, signal));
    return new Promise<TentativeAppend>((resolve, reject) => {
      this.#enqueue({ kind: 'tentative', records, signal, resolve, reject });
    });
  }

  #enqueue(queued: Queued): void {
    this.#bySignal.add(queued.signal, queued);
    this.#queue.push(queued);
    // Started on the next turn of the event loop, so that every append of this turn shares the frame.
    this.#writer ??= new Promise<void>((started) => setImmediate(started)).then(() => this.#write());
  }

  async endOffsets(signal: AbortSignal): Promise<Offsets> {
    if (signal.aborted) throw abortError(signal, `reading the end of ${this.description}`);
    if (this.#segments.length === 0) return this.#afterOpen(signal, () => this.endOffsets(signal));
    return new Map([[PARTITION, this.#durableEnd]]);
  }

  /** A node listens before its log is open: calls made meanwhile wait for the open, within their signal. */
  async #afterOpen<T>(signal: AbortSignal, then: () => Promise<T>): Promise<T> {
    await raceAbort(this.#opened.promise, signal, `waiting for ${this.description} to open`);
    return then();
  }

  /**
   * Writes frames until the queue is empty: each takes all appends that queued while the last one synced,
   * up to the next conditional write, for which the writer stops until its verdict.
   */
  async #write(): Promise<void> {
    while (this.#queue.length > 0) {
      const taken = this.#queue;
      this.#queue = [];
      // The callers of aborted appends were told already; their records are never written.
      let run: QueuedAppend[] = [];
      for (const queued of taken) {
        if (queued.signal.aborted) continue;
        if (queued.kind === 'append') {
          run.push(queued);
          continue;
        }
        await this.#writeAppends(run);
        run = [];
        await this.#holdFor(queued);
      }
      await this.#writeAppends(run);
    }
    this.#writer = undefined;
  }

  async #writeAppends(appends: readonly QueuedAppend[]): Promise<void> {
    if (appends.length === 0) return;
    const baseOffset = this.#nextOffset;
    try {
      if (this.#failure !== undefined) throw this.#failure;
      await this.#writeFrame(encodeFrame(baseOffset, appends), appends.length);
    } catch (error) {
      this.#fail(error, appends);
      return;
    }
    appends.forEach((append, i) => {
      this.#bySignal.delete(append.signal, append);
      append.resolve({ partition: PARTITION, offset: baseOffset + i });
    });
  }

  /** Hands a conditional write its offsets, then holds the log's end until commit(), abort() or the timeout. */
  async #holdFor(tentative: QueuedTentative): Promise<void> {
    this.#bySignal.delete(tentative.signal, tentative);
    if (this.#failure !== undefined) {
      tentative.reject(this.#failure);
      return;
    }
    const offset = this.#nextOffset;
    const verdict = Promise.withResolvers<boolean>();
    const committed = Promise.withResolvers<void>();
    committed.promise.catch(() => {});
    let decided = false;
    const decide = (commit: boolean): void => {
      decided = true;
      verdict.resolve(commit);
    };
    const timer = setTimeout(() => decide(false), this.#tentativeTimeoutMs);
    tentative.resolve({
      partition: PARTITION,
      offset,
      commit: () => {
        if (decided) {
          return Promise.reject(
            new Kvs2Error(
              'LOG_UNAVAILABLE',
              `${this.description}: the conditional write at offset ${offset} was discarded, not decided within ${this.#tentativeTimeoutMs} ms`,
            ),
          );
        }
        decide(true);
        return committed.promise;
      },
      abort: () => {
        if (!decided) decide(false);
        return Promise.resolve();
      },
    });
    const commit = await verdict.promise;
    clearTimeout(timer);
    if (!commit) return;
    try {
      if (this.#failure !== undefined) throw this.#failure;
      await this.#writeFrame(encodeFrame(offset, tentative.records), tentative.records.length);
      committed.resolve();
    } catch (error) {
      this.#fail(error, []);
      // The frame may be on disk in part or whole: a restart keeps it if it is whole.
      committed.reject(
        new Kvs2Error(
          'LOG_OUTCOME_UNKNOWN',
          `${this.description}: writing the conditional write at offset ${offset} failed: ${describeError(error)}`,
          { cause: error },
        ),
      );
    }
  }

  async #writeFrame(frame: Buffer, count: number): Promise<void> {
    let segment = this.#segments.at(-1) as OpenSegment;
    if (segment.index.size >= this.#segmentBytes) segment = await this.#roll();
    const { index, file } = segment;
    const position = index.size;
    let written = 0;
    while (written < frame.length) {
      const { bytesWritten } = await file.write(frame, written, frame.length - written, position + written);
      written += bytesWritten;
    }
    index.frameOffsets.push(this.#nextOffset);
    index.framePositions.push(position);
    index.size = position + frame.length;
    this.#nextOffset += count;
    index.end = this.#nextOffset;
    this.#durableEnd = this.#nextOffset;
    this.#wake();
  }

  /**
   * After a failed write or sync the file's contents past the last sync are unknown (and Linux may have
   * dropped the failed pages, so a later sync would succeed without them): the log takes no more appends.
   * A restart cuts the file back to its last whole frame.
   */
  #fail(error: unknown, appends: readonly QueuedAppend[]): void {
    this.#failure ??= new Kvs2Error(
      'LOG_UNAVAILABLE',
      `${this.description}: append failed, restart the node: ${describeError(error)}`,
      { cause: error },
    );
    for (const append of appends) {
      this.#bySignal.delete(append.signal, append);
      append.reject(this.#failure);
    }
  }

  /** Begins a new segment at the next offset; its directory entry is synced before any record goes in it. */
  async #roll(): Promise<OpenSegment> {
    const baseOffset = this.#nextOffset;
    const path = join(this.#dir, segmentFileName(baseOffset));
    const file = await openFile(path, SEGMENT_CREATE);
    const segment: OpenSegment = {
      index: { baseOffset, path, size: 0, end: baseOffset, frameOffsets: [], framePositions: [] },
      file,
    };
    try {
      await this.#syncDir();
    } catch (error) {
      await file.close().catch(() => {});
      throw error;
    }
    this.#segments.push(segment);
    return segment;
  }

  async startOffsets(): Promise<Offsets> {
    return new Map([[PARTITION, this.#startOffset()]]);
  }

  #startOffset(): number {
    return Math.max(this.#openSegmentsOrThrow()[0]?.index.baseOffset ?? 0, this.#releasedBefore);
  }

  async *read(from: Offsets, signal: AbortSignal): AsyncIterable<LogBatch> {
    this.#openSegmentsOrThrow();
    let position = from.get(PARTITION) ?? this.#startOffset();
    while (!signal.aborted && !this.#closing) {
      const end = this.#durableEnd;
      if (position >= end) {
        await this.#waitForRecords(signal);
        continue;
      }
      const start = this.#startOffset();
      if (position < start) {
        throw new Kvs2Error(
          'LOG_POSITION_LOST',
          `${this.description} starts at offset ${start} but offset ${position} was asked for`,
        );
      }
      const batch = this.#readBatch(position, end);
      position = batch.nextOffsets.get(PARTITION) ?? end;
      yield batch;
    }
  }

  /** Records from `position` on (all below `end` are synced), within the batch bounds. */
  #readBatch(position: number, end: number): LogBatch {
    const records: LogRecord[] = [];
    let bytes = 0;
    let next = position;
    for (let s = this.#segmentAt(position); s < this.#segments.length; s++) {
      const { index, file } = this.#segments[s] as OpenSegment;
      let f = Math.max(0, lastAtOrBelow(index.frameOffsets, next));
      for (; f < index.frameOffsets.length; f++) {
        const frameOffset = index.frameOffsets[f] as number;
        if (frameOffset >= end) break;
        const framePosition = index.framePositions[f] as number;
        const frameEnd = index.framePositions[f + 1] ?? index.size;
        let full = false;
        readFrame(file, framePosition, frameEnd - framePosition, index.path, (offset, key, value, recordBytes) => {
          if (offset < next) return true;
          records.push({ partition: PARTITION, offset, key, value });
          bytes += recordBytes;
          next = offset + 1;
          full = records.length >= this.#maxBatchRecords || bytes >= this.#maxBatchBytes;
          return !full;
        });
        if (full) return { records, nextOffsets: new Map([[PARTITION, next]]) };
      }
    }
    // Everything below `end` was read: offsets no frame holds (a gap a migration kept) are skipped.
    return { records, nextOffsets: new Map([[PARTITION, end]]) };
  }

  /** Index of the segment holding `offset`: the last one starting at or below it. */
  #segmentAt(offset: number): number {
    let low = 0;
    let high = this.#segments.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if ((this.#segments[mid] as OpenSegment).index.baseOffset <= offset) low = mid;
      else high = mid - 1;
    }
    return low;
  }

  releaseBefore(offsets: Offsets): void {
    const upTo = Math.min(offsets.get(PARTITION) ?? 0, this.#durableEnd) - this.#retainRecords;
    if (this.#closing || upTo <= this.#releasedBefore) return;
    this.#releasedBefore = upTo;
    // A segment goes once the next one starts at or below `upTo`; the last one is never deleted.
    while (this.#segments.length > 1 && (this.#segments[1] as OpenSegment).index.baseOffset <= upTo) {
      const released = this.#segments.shift() as OpenSegment;
      // Readers hold no handle across batches, and the writer only uses the last segment. Unsynced, the
      // deletion may be undone by a machine crash: the segment then holds records already applied,
      // which a replica skips past, as it reads from its store's offsets.
      void released.file
        .close()
        .then(() => rm(released.index.path, { force: true }))
        .catch(() => {});
    }
  }

  async close(): Promise<void> {
    this.#closing = true;
    this.#opened.reject(new Kvs2Error('SHUTTING_DOWN', `${this.description} is closing`));
    this.#wake();
    await this.#writer;
    const segments = this.#segments;
    this.#segments = [];
    for (const segment of segments) await segment.file.close();
  }

  /** Indexes the segment files, cutting off a torn frame at the end of the last one. */
  async #openSegments(): Promise<void> {
    const found = listSegments(this.#dir);
    let previousEnd = 0;
    for (const [i, segment] of found.entries()) {
      const scanned = scanSegment(segment, i === found.length - 1, previousEnd);
      const file = await openFile(segment.path, SEGMENT_OPEN);
      this.#segments.push({ index: scanned.index, file });
      if (scanned.torn !== undefined) {
        await file.truncate(scanned.torn.at);
        await file.datasync();
      }
      previousEnd = scanned.index.end;
    }
    if (this.#segments.length === 0) {
      this.#nextOffset = 0;
      await this.#roll();
    }
    this.#nextOffset = (this.#segments.at(-1) as OpenSegment).index.end;
    this.#durableEnd = this.#nextOffset;
  }

  async #readIdentity(): Promise<string | undefined> {
    try {
      return (await readFile(join(this.#dir, IDENTITY_FILE), 'utf8')).trim();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  /** Written to a temporary file, synced and renamed: a crash leaves the old identity or the new, whole. */
  async #writeIdentity(identity: string): Promise<void> {
    const temporary = join(this.#dir, `${IDENTITY_FILE}.tmp`);
    await writeFile(temporary, `${identity}\n`, { flush: true });
    await rename(temporary, join(this.#dir, IDENTITY_FILE));
    await this.#syncDir();
  }

  async #syncDir(): Promise<void> {
    const dir = await openFile(this.#dir, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  #openSegmentsOrThrow(): readonly OpenSegment[] {
    if (this.#segments.length === 0) {
      throw new Kvs2Error('LOG_UNAVAILABLE', `${this.description} is not open`);
    }
    return this.#segments;
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

/**
 * One synced frame, read synchronously: it is in the page cache (just written, or read at open), and a
 * read costs less than a trip through the thread pool. Its checksum is checked again, since disks rot.
 */
function readFrame(file: FileHandle, position: number, length: number, path: string, visit: FrameRecordVisitor): void {
  const frame = Buffer.allocUnsafe(length);
  let read = 0;
  while (read < length) {
    const n = readSync(file.fd, frame, read, length - read, position + read);
    if (n === 0) break;
    read += n;
  }
  const checked = checkFrame(frame.subarray(0, read), 0);
  if (isFrameFault(checked) || checked.bytes !== length) {
    const why = isFrameFault(checked) ? checked.why : `it is ${checked.bytes} bytes, not ${length}`;
    throw new Kvs2Error(
      'INCONSISTENT_STATE',
      `the embedded log's segment ${path} is corrupt at byte ${position}: a frame ${why}`,
    );
  }
  decodeFrameRecords(frame, checked, visit);
}

/** Index of the last element at or below `value` in an ascending array; -1 when there is none. */
function lastAtOrBelow(sorted: readonly number[], value: number): number {
  let low = 0;
  let high = sorted.length - 1;
  let found = -1;
  while (low <= high) {
    const mid = (low + high) >> 1;
    if ((sorted[mid] as number) <= value) {
      found = mid;
      low = mid + 1;
    } else high = mid - 1;
  }
  return found;
}
