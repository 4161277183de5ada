import { abortError, Kvs2Error } from '../errors.js';
import type { Offsets } from '../offsets.js';
import { hasReached } from '../offsets.js';

/** How far the replica has applied the log: what reads are served from, and a way to wait for more. */
export interface AppliedWatermark {
  /** Offsets applied so far, per partition (next offset to apply). */
  readonly appliedOffsets: Offsets;
  /** Changes whenever appliedOffsets does, so that values derived from them can be cached. */
  readonly appliedVersion: number;
  /** The identity of the log the applied offsets refer to (changes when a recreated log is adopted). */
  readonly logIdentity: string;
  /**
   * Resolves once every partition in `target` has been applied up to its offset; rejects with the abort's
   * error (DEADLINE_EXCEEDED, CANCELLED) if the signal fires first, and with LOG_RECREATED if the replica
   * moves to a new log meanwhile.
   */
  waitFor(target: Offsets, signal: AbortSignal): Promise<void>;
  /**
   * Resolves once logIdentity names a log: at once, unless the replica has not begun reading one yet (a
   * node with an empty store, while it starts). A write's token must name the log it went to, and tokens
   * are tagged with this identity. Rejects with the abort's error if the signal fires first.
   */
  whenNamed(signal: AbortSignal): Promise<void>;
}

interface Waiter {
  readonly target: Offsets;
  readonly resolve: () => void;
  readonly reject: (error: Kvs2Error) => void;
}

/** The replica's side of the watermark: it moves the offsets forward and wakes the reads waiting for them. */
export class ReplicaWatermark implements AppliedWatermark {
  #applied = new Map<number, number>();
  #version = 0;
  #identity: string;
  readonly #waiters = new Set<Waiter>();
  readonly #restartListeners = new Set<() => void>();

  constructor(logIdentity: string) {
    this.#identity = logIdentity;
  }

  get appliedOffsets(): Offsets {
    return this.#applied;
  }

  get appliedVersion(): number {
    return this.#version;
  }

  get logIdentity(): string {
    return this.#identity;
  }

  waitFor(target: Offsets, signal: AbortSignal): Promise<void> {
    if (hasReached(this.#applied, target)) return Promise.resolve();
    if (signal.aborted) return Promise.reject(abortError(signal, 'waiting for the replica'));
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        target,
        resolve: () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (error: Kvs2Error) => {
          signal.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      const onAbort = (): void => {
        this.#waiters.delete(waiter);
        reject(abortError(signal, 'waiting for the replica to apply the log'));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiters.add(waiter);
    });
  }

  whenNamed(signal: AbortSignal): Promise<void> {
    if (this.#identity !== '') return Promise.resolve();
    if (signal.aborted) return Promise.reject(abortError(signal, 'waiting for the replica to open the log'));
    return new Promise<void>((resolve, reject) => {
      const done = (): void => {
        unsubscribe();
        signal.removeEventListener('abort', onAbort);
      };
      const unsubscribe = this.onRestart(() => {
        if (this.#identity === '') return;
        done();
        resolve();
      });
      const onAbort = (): void => {
        done();
        reject(abortError(signal, 'waiting for the replica to open the log'));
      };
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Starts over from the offsets a store holds for this log (at start, and after a rebuild). */
  restart(appliedOffsets: Offsets, logIdentity: string): void {
    this.#applied = new Map(appliedOffsets);
    this.#identity = logIdentity;
    this.#version++;
    for (const listener of this.#restartListeners) listener();
  }

  /**
   * Calls the listener after every restart(): the offsets jump there without a batch (serving workers
   * mirror the watermark and must hear it). Returns the unsubscribe.
   */
  onRestart(listener: () => void): () => void {
    this.#restartListeners.add(listener);
    return () => this.#restartListeners.delete(listener);
  }

  /** Records that a batch ending at these offsets is applied, and wakes the reads that waited for it. */
  advance(nextOffsets: Offsets): void {
    for (const [partition, offset] of nextOffsets) this.#applied.set(partition, offset);
    this.#version++;
    for (const waiter of this.#waiters) {
      if (hasReached(this.#applied, waiter.target)) {
        this.#waiters.delete(waiter);
        waiter.resolve();
      }
    }
  }

  /** Fails every waiting read: the offsets they wait for refer to a log that was replaced. */
  abandonWaiters(reason: string): void {
    for (const waiter of this.#waiters) {
      waiter.reject(new Kvs2Error('LOG_RECREATED', `the read waited for a log that was replaced: ${reason}`));
    }
    this.#waiters.clear();
  }
}
