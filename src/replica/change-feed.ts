import type { LogRecord } from '../log/log.js';
import type { Logger } from '../logger.js';
import type { Offsets } from '../offsets.js';

/** What subscribers of the replica's change feed hear. */
export type AppliedChange =
  /** A batch is now applied (visible to reads): its records, in log order per partition. */
  | { readonly kind: 'applied'; readonly records: readonly LogRecord[]; readonly nextOffsets: Offsets }
  /** The store was thrown away and is being rebuilt from a new log: positions before mean nothing now. */
  | { readonly kind: 'reset'; readonly reason: string };

export type ChangeListener = (change: AppliedChange) => void;

export interface ChangeSubscription {
  /** The applied offsets when the subscription began: the listener hears every change after them. */
  readonly from: Offsets;
  readonly unsubscribe: () => void;
}

/** The changes a replica applies, as they become visible to reads (what watches follow). */
export interface ChangeFeed {
  /** Subscribes from now on; `from` is read synchronously, so no change falls between it and the listener. */
  subscribe(listener: ChangeListener): ChangeSubscription;
}

/**
 * The replica's side of the feed: it announces each change to every subscriber. A listener that throws
 * is logged and does not stop the others.
 */
export class ChangeBroadcaster implements ChangeFeed {
  readonly #listeners = new Set<ChangeListener>();
  readonly #applied: () => Offsets;
  readonly #logger: Logger;

  /** `applied` gives the offsets applied so far, where a new subscription starts. */
  constructor(applied: () => Offsets, logger: Logger) {
    this.#applied = applied;
    this.#logger = logger;
  }

  /** Whether anyone listens: the replica keeps the records of a batch for the feed only then. */
  get hasListeners(): boolean {
    return this.#listeners.size > 0;
  }

  subscribe(listener: ChangeListener): ChangeSubscription {
    this.#listeners.add(listener);
    return { from: new Map(this.#applied()), unsubscribe: () => this.#listeners.delete(listener) };
  }

  emit(change: AppliedChange): void {
    for (const listener of this.#listeners) {
      try {
        listener(change);
      } catch (error) {
        this.#logger.error({ err: error }, 'a change listener failed');
      }
    }
  }
}
