import { pause } from '../abort.js';
import type { Offsets } from '../offsets.js';
import { hasReached } from '../offsets.js';
import type { AppliedWatermark } from './applied-watermark.js';

/** How far one partition of the log is applied, and how far behind its end that is. */
export interface PartitionLag {
  readonly partition: number;
  /** The next offset to apply. */
  readonly appliedOffset: number;
  /** The log's end as last learnt; null until known. */
  readonly endOffset: number | null;
  /** endOffset - appliedOffset (never below 0); null until the end is known. */
  readonly lagRecords: number | null;
}

/** How far the replica is behind the log, for status, metrics and readiness. */
export interface ReplicaProgressView {
  partitions(): readonly PartitionLag[];
  /** Date.now() when the replica was last known caught up with the log; null if never. */
  lastCaughtUpAtMs(): number | null;
  /** 0..1: share of the first catch-up done; 1 once caught up once. */
  bootstrapRatio(): number;
}

/** For what must follow the lag as it changes (readiness) rather than read it when asked. */
export interface ReplicaProgressUpdates {
  /** Calls the listener whenever the log's end is learnt anew or the catch-up state changes; returns the unsubscribe. */
  onUpdate(listener: () => void): () => void;
}

export interface ReplicaProgressOptions {
  readonly watermark: AppliedWatermark;
  /** Asks the log for its end offsets (`Log.endOffsets`). */
  readonly endOffsets: (signal: AbortSignal) => Promise<Offsets>;
  /** How often the end is asked for while running. */
  readonly refreshMs?: number;
  /** Last time the store knew itself caught up (from an earlier run), as the starting value. */
  readonly caughtUpAt?: number | null;
  readonly now?: () => number;
}

/**
 * Every second: a lag in records is only as fresh as the end it is measured against, and a probe that
 * flips on --max-ready-lag should see a burst within about that. One ListOffsets request per broker a
 * second on Kafka, a field read on the embedded log: cheap for both.
 */
const DEFAULT_REFRESH_MS = 1000;
/** One end query never holds up the next ones for longer than this (a broker that does not answer). */
const QUERY_TIMEOUT_MS = 5000;

/**
 * Tracks the log's end beside the replica's applied offsets. The end is learnt from the replica's catch-up
 * targets and, while running, by asking the log every `refreshMs`; the applied offsets are read from the
 * watermark when asked, so applying a batch costs nothing here.
 */
export class ReplicaProgress implements ReplicaProgressView, ReplicaProgressUpdates {
  readonly #watermark: AppliedWatermark;
  readonly #endOffsets: (signal: AbortSignal) => Promise<Offsets>;
  readonly #refreshMs: number;
  readonly #now: () => number;
  readonly #listeners = new Set<() => void>();
  #end: Offsets | null = null;
  /** When #end was asked for: once it is applied, everything written before then is. */
  #endAskedAt = 0;
  #lastCaughtUpAt: number | null;
  /** The first catch-up: where it started, where it must reach; undefined before it began. */
  #bootstrap: { readonly from: number; readonly to: number } | undefined;
  #bootstrapped = false;
  #refreshing: Promise<void> | undefined;

  constructor(options: ReplicaProgressOptions) {
    this.#watermark = options.watermark;
    this.#endOffsets = options.endOffsets;
    this.#refreshMs = options.refreshMs ?? DEFAULT_REFRESH_MS;
    this.#lastCaughtUpAt = options.caughtUpAt ?? null;
    this.#now = options.now ?? Date.now;
  }

  partitions(): readonly PartitionLag[] {
    const applied = this.#watermark.appliedOffsets;
    const end = this.#end;
    const numbers = new Set([...applied.keys(), ...(end?.keys() ?? [])]);
    return [...numbers]
      .sort((a, b) => a - b)
      .map((partition) => {
        const appliedOffset = applied.get(partition) ?? 0;
        const endOffset = end === null ? null : (end.get(partition) ?? null);
        return {
          partition,
          appliedOffset,
          endOffset,
          lagRecords: endOffset === null ? null : Math.max(0, endOffset - appliedOffset),
        };
      });
  }

  lastCaughtUpAtMs(): number | null {
    this.#noteIfCaughtUp();
    return this.#lastCaughtUpAt;
  }

  bootstrapRatio(): number {
    if (this.#bootstrapped) return 1;
    if (this.#bootstrap === undefined) return 0;
    const { from, to } = this.#bootstrap;
    if (to <= from) return 0;
    return Math.min(1, Math.max(0, (total(this.#watermark.appliedOffsets) - from) / (to - from)));
  }

  onUpdate(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The replica begins (again) to catch up with `target`, the log's end asked for at `askedAt`. */
  catchingUp(target: Offsets, askedAt: number): void {
    // After a rebuild the offsets refer to another log: the old end means nothing any more.
    this.#learnEnd(new Map(target), askedAt);
    this.#bootstrap ??= { from: total(this.#watermark.appliedOffsets), to: total(target) };
    this.#notify();
  }

  /** The replica reached its catch-up target. */
  caughtUp(): void {
    this.#bootstrapped = true;
    this.#noteIfCaughtUp();
    this.#notify();
  }

  /**
   * Asks the log for its end every refresh interval until the signal aborts; resolves then. Failures are
   * the replica's to report: the end stays as last learnt.
   */
  run(signal: AbortSignal): Promise<void> {
    this.#refreshing ??= this.#refreshUntil(signal);
    return this.#refreshing;
  }

  async #refreshUntil(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await pause(this.#refreshMs, signal);
      if (signal.aborted) break;
      const askedAt = this.#now();
      const identity = this.#watermark.logIdentity;
      try {
        const end = await this.#askEnd(signal);
        // A rebuild meanwhile moved to another log: this end belongs to the old one.
        if (identity !== this.#watermark.logIdentity) continue;
        // Under a steady stream of writes the newest end is always a little ahead; the previous one,
        // once reached, still dates the catch-up to within a refresh interval.
        this.#noteIfCaughtUp();
        this.#learnEnd(end, askedAt);
        this.#notify();
      } catch {
        // Stay with the end last learnt.
      }
    }
    this.#refreshing = undefined;
  }

  /** One end query, aborted by the stop or after QUERY_TIMEOUT_MS, whichever comes first. */
  async #askEnd(stop: AbortSignal): Promise<Offsets> {
    const query = new AbortController();
    const onStop = (): void => query.abort(stop.reason);
    stop.addEventListener('abort', onStop, { once: true });
    const timer = setTimeout(
      () => query.abort(new DOMException('no answer in time', 'TimeoutError')),
      QUERY_TIMEOUT_MS,
    );
    try {
      return await this.#endOffsets(query.signal);
    } finally {
      clearTimeout(timer);
      stop.removeEventListener('abort', onStop);
    }
  }

  #learnEnd(end: Offsets, askedAt: number): void {
    this.#end = end;
    this.#endAskedAt = askedAt;
    this.#noteIfCaughtUp();
  }

  /** Everything written before the end was asked for is applied once that end is. */
  #noteIfCaughtUp(): void {
    if (this.#end === null || !hasReached(this.#watermark.appliedOffsets, this.#end)) return;
    if (this.#lastCaughtUpAt === null || this.#endAskedAt > this.#lastCaughtUpAt) {
      this.#lastCaughtUpAt = this.#endAskedAt;
    }
  }

  #notify(): void {
    for (const listener of this.#listeners) listener();
  }
}

/** Records in all partitions up to these offsets. */
function total(offsets: Offsets): number {
  let sum = 0;
  for (const offset of offsets.values()) sum += offset;
  return sum;
}
