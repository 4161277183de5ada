import { abortError, describeError, isKvs2Error, Kvs2Error } from '../errors.js';
import type { LogBatch, LogRecord } from '../log/log.js';
import type { Offsets } from '../offsets.js';
import type { AppliedChange, ChangeFeed } from '../replica/change-feed.js';
import { decodeToken, encodeToken } from './consistency-token.js';

/** A change as a watcher sees it. `token` resumes the watch right after this event. */
export interface WatchEvent {
  readonly kind: 'put' | 'delete' | 'progress';
  readonly key: Buffer;
  readonly value: Buffer;
  readonly token: Buffer;
  /**
   * The change's log position (its record's offset + 1 in the key's partition): after a put the key's new
   * version, as reads return it; after a delete the position of the delete (the key is then absent, and
   * reads answer 0). 0 for progress.
   */
  readonly version: number;
}

/** Reads the log's history from given offsets (any `Log` is one): what a watch replays from. */
export interface LogHistory {
  read(from: Offsets, signal: AbortSignal): AsyncIterable<LogBatch>;
}

/** What a watch follows: the replica's live change feed, and the log it reads for what came before. */
export interface ChangeSource {
  readonly feed: ChangeFeed;
  readonly history: LogHistory;
}

export interface WatchSessionOptions {
  readonly source: ChangeSource;
  /** Tag of the log the tokens refer to (see consistency-token.ts). */
  readonly logTag: Buffer;
  /** Watch one key (non-empty) or, when empty, every key with `prefix` (empty: all keys). */
  readonly key: Buffer;
  readonly prefix: Buffer;
  /** Resume after this token; null starts now. */
  readonly after: Buffer | null;
  readonly progressIntervalMs: number;
  /** Most events (and bytes) queued for a watcher that reads too slowly before it is cut off. */
  readonly maxQueuedEvents: number;
  readonly maxQueuedBytes: number;
  readonly signal: AbortSignal;
}

const EMPTY = Buffer.alloc(0);

/** A change held back while the replay runs: only the records this watch matches. */
interface HeldChange {
  readonly records: readonly LogRecord[];
  readonly nextOffsets: Offsets;
}

/**
 * One watch: the changes of the replica's feed that match its filter, in log order per partition, with a
 * token after each. Starting from a token, it first replays from the log what happened between the token
 * and the moment it subscribed, holding live changes back until then; the replay goes at the reader's
 * pace. Quiet periods produce progress events.
 *
 * Live changes cannot wait, so a reader that falls too far behind them is cut off with WATCHER_TOO_SLOW.
 * The watch then delivers nothing more: the events it delivered are a gap-free prefix of the changes, so
 * the token of the last one resumes without loss. Nothing is buffered without bound.
 */
export class WatchSession {
  readonly #options: WatchSessionOptions;
  /** Per partition, the next offset this watcher has not yet seen. */
  readonly #position = new Map<number, number>();
  readonly #queue: WatchEvent[] = [];
  #queuedBytes = 0;
  #failure: Kvs2Error | undefined;
  #wake: (() => void) | undefined;
  /** Wakes the replay, paused on a full queue, once the reader has taken about half of it. */
  #wakeReplay: (() => void) | undefined;
  /** Live changes held back while the replay runs; null once live changes flow straight through. */
  #heldBack: HeldChange[] | null = [];
  #heldEvents = 0;
  #heldBytes = 0;
  #sentSinceProgress = false;
  readonly #unsubscribe: () => void;
  readonly #timer: NodeJS.Timeout;

  constructor(options: WatchSessionOptions) {
    this.#options = options;
    const start = options.after === null ? null : decodeToken(options.after, 'after');
    if (start !== null && !start.logTag.equals(options.logTag)) {
      throw new Kvs2Error(
        'TOKEN_FROM_OTHER_LOG',
        'after names positions in another log (another cluster, or a topic since recreated)',
      );
    }
    const subscription = options.source.feed.subscribe((change) => this.#onChange(change));
    this.#unsubscribe = subscription.unsubscribe;
    // Partitions the token does not name start now.
    for (const [partition, offset] of subscription.from) this.#position.set(partition, offset);
    for (const [partition, offset] of start?.offsets ?? []) this.#position.set(partition, offset);
    this.#timer = setInterval(() => this.#progressTick(), options.progressIntervalMs);
    options.signal.addEventListener('abort', () => this.#fail(abortError(options.signal, 'watch')), { once: true });
    void this.#replay(subscription.from);
  }

  /** The next event; throws the failure that ended the watch once every event before it was taken. */
  async next(): Promise<WatchEvent> {
    for (;;) {
      const event = this.#queue.shift();
      if (event !== undefined) {
        this.#queuedBytes -= sizeOf(event);
        if (this.#wakeReplay !== undefined && this.#queue.length <= this.#options.maxQueuedEvents / 2) {
          const wake = this.#wakeReplay;
          this.#wakeReplay = undefined;
          wake();
        }
        return event;
      }
      if (this.#failure !== undefined) throw this.#failure;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }

  close(): void {
    this.#fail(new Kvs2Error('CANCELLED', 'watch closed'));
  }

  /**
   * Replays [position, from) from the log for every partition the token left behind, then the live
   * changes held back meanwhile, both at the reader's pace; then lets live changes flow straight through.
   */
  async #replay(from: Offsets): Promise<void> {
    const behind = (): boolean => [...from].some(([p, end]) => (this.#position.get(p) ?? 0) < end);
    if (behind()) {
      const stop = new AbortController();
      const onAbort = (): void => stop.abort();
      this.#options.signal.addEventListener('abort', onAbort, { once: true });
      try {
        for await (const batch of this.#options.source.history.read(this.#position, stop.signal)) {
          for (const record of batch.records) {
            if (record.offset >= (from.get(record.partition) ?? 0)) continue;
            if (!(await this.#deliverPaced(record))) return;
          }
          this.#advance(clampTo(batch.nextOffsets, from));
          if (!behind()) break;
        }
      } catch (error) {
        if (this.#failure !== undefined) return;
        this.#fail(
          isKvs2Error(error) && error.code === 'LOG_POSITION_LOST'
            ? new Kvs2Error(
                'TOKEN_TOO_OLD',
                `the log no longer holds the changes after this token (${error.message}); start a new watch ` +
                  'from now and re-read what you need with Scan',
              )
            : new Kvs2Error('LOG_UNAVAILABLE', `watch replay failed: ${describeError(error)}`),
        );
        return;
      } finally {
        stop.abort();
        this.#options.signal.removeEventListener('abort', onAbort);
      }
    }
    // Changes may still be held back while earlier ones wait for room: take them until none is left.
    for (let change = this.#heldBack?.shift(); change !== undefined; change = this.#heldBack?.shift()) {
      for (const record of change.records) {
        this.#heldEvents--;
        this.#heldBytes -= recordBytes(record);
        if (!(await this.#deliverPaced(record))) return;
      }
      this.#advance(change.nextOffsets);
    }
    this.#heldBack = null;
  }

  #onChange(change: AppliedChange): void {
    if (this.#failure !== undefined) return;
    if (change.kind === 'reset') {
      this.#fail(new Kvs2Error('LOG_RECREATED', `the log was replaced (${change.reason}); start a new watch`));
      return;
    }
    if (this.#heldBack !== null) {
      const records = change.records.filter((record) => record.key !== null && this.#matches(record.key));
      this.#heldBack.push({ records, nextOffsets: change.nextOffsets });
      this.#heldEvents += records.length;
      for (const record of records) this.#heldBytes += recordBytes(record);
      if (this.#heldEvents > this.#options.maxQueuedEvents || this.#heldBytes > this.#options.maxQueuedBytes) {
        this.#tooSlow();
      }
      return;
    }
    for (const record of change.records) {
      if (!this.#deliver(record)) return;
    }
    this.#advance(change.nextOffsets);
  }

  /**
   * Queues the record if it matches and the watcher has not seen it, and moves the position past it.
   * False once the watch has failed: nothing may be queued after that, or the watcher would see a gap.
   */
  #deliver(record: LogRecord): boolean {
    if (this.#failure !== undefined) return false;
    const seen = this.#position.get(record.partition) ?? 0;
    if (record.offset < seen) return true;
    if (record.key === null || !this.#matches(record.key)) {
      this.#position.set(record.partition, record.offset + 1);
      return true;
    }
    const bytes = recordBytes(record);
    if (!this.#fits(bytes)) {
      this.#tooSlow();
      return false;
    }
    this.#position.set(record.partition, record.offset + 1);
    const version = record.offset + 1;
    this.#enqueue(
      record.value === null
        ? { kind: 'delete', key: record.key, value: EMPTY, token: this.#token(), version }
        : { kind: 'put', key: record.key, value: record.value, token: this.#token(), version },
    );
    return true;
  }

  /** Like #deliver, but first waits for room in the queue; false once the watch has failed. */
  async #deliverPaced(record: LogRecord): Promise<boolean> {
    while (this.#failure === undefined && !this.#fits(recordBytes(record))) {
      await new Promise<void>((resolve) => {
        this.#wakeReplay = resolve;
      });
    }
    return this.#deliver(record);
  }

  /** Moves the position to the end of a batch: offsets past its last record hold nothing this watch sees. */
  #advance(nextOffsets: Offsets): void {
    if (this.#failure !== undefined) return;
    for (const [partition, next] of nextOffsets) {
      if (next > (this.#position.get(partition) ?? 0)) this.#position.set(partition, next);
    }
  }

  #matches(key: Buffer): boolean {
    const { key: only, prefix } = this.#options;
    if (only.length > 0) return key.equals(only);
    return prefix.length === 0 || (key.length >= prefix.length && prefix.equals(key.subarray(0, prefix.length)));
  }

  /** Whether an event of this size may join the queue; a lone event always may, however large. */
  #fits(bytes: number): boolean {
    const { maxQueuedEvents, maxQueuedBytes } = this.#options;
    const length = this.#queue.length;
    return length === 0 || (length < maxQueuedEvents && this.#queuedBytes + bytes <= maxQueuedBytes);
  }

  #enqueue(event: WatchEvent): void {
    this.#queue.push(event);
    this.#queuedBytes += sizeOf(event);
    this.#sentSinceProgress = true;
    this.#wakeConsumer();
  }

  #progressTick(): void {
    if (this.#failure !== undefined || this.#heldBack !== null) return;
    if (!this.#sentSinceProgress && this.#queue.length === 0) {
      this.#enqueue({ kind: 'progress', key: EMPTY, value: EMPTY, token: this.#token(), version: 0 });
    }
    this.#sentSinceProgress = false;
  }

  #token(): Buffer {
    return encodeToken(this.#options.logTag, this.#position);
  }

  #tooSlow(): void {
    this.#fail(
      new Kvs2Error(
        'WATCHER_TOO_SLOW',
        `the watcher fell more than ${this.#options.maxQueuedEvents} events or ${this.#options.maxQueuedBytes} ` +
          'bytes behind and was cut off; resume with the token of the last event received',
      ),
    );
    // What is queued would only be thrown away later: free it now.
    this.#queue.length = 0;
    this.#queuedBytes = 0;
  }

  #fail(error: Kvs2Error): void {
    if (this.#failure !== undefined) return;
    this.#failure = error;
    clearInterval(this.#timer);
    this.#unsubscribe();
    this.#heldBack = null;
    this.#heldEvents = 0;
    this.#heldBytes = 0;
    this.#wakeConsumer();
    const wakeReplay = this.#wakeReplay;
    this.#wakeReplay = undefined;
    wakeReplay?.();
  }

  #wakeConsumer(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

function sizeOf(event: WatchEvent): number {
  return event.key.length + event.value.length;
}

function recordBytes(record: LogRecord): number {
  return (record.key?.length ?? 0) + (record.value?.length ?? 0);
}

function clampTo(offsets: Offsets, limits: Offsets): Offsets {
  const clamped = new Map<number, number>();
  for (const [partition, offset] of offsets) clamped.set(partition, Math.min(offset, limits.get(partition) ?? 0));
  return clamped;
}
