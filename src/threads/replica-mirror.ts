import type { Logger } from '../logger.js';
import { ReplicaWatermark } from '../replica/applied-watermark.js';
import { ChangeBroadcaster, type ChangeFeed } from '../replica/change-feed.js';
import type { NodeHealthView, NodeStateName } from '../service/node-health.js';
import type { StoreProgress } from '../store/store.js';
import { unpackRecords } from './record-packing.js';
import { type HealthState, isMirrorMessage, toOffsets } from './thread-messages.js';

/** The reading thread's view of the owner's store. */
export interface MirroredStore {
  advanceReads(): void;
  progressOfReads(): StoreProgress;
}

/**
 * What a thread reading the store knows of the replica (and health) of the thread that owns the log: the
 * owner's messages, applied in order. A node's serving worker mirrors the node; the in-process replica's
 * application thread mirrors its replica worker (`applyOn: 'worker'`).
 */
export class ReplicaMirror implements NodeHealthView {
  readonly watermark: ReplicaWatermark;
  readonly #changes: ChangeBroadcaster;
  readonly #store: MirroredStore;
  #health: HealthState;
  readonly #healthListeners = new Set<() => void>();

  /** The log the node's replica reads, as it last said. */
  #nodeIdentity: string;

  constructor(store: MirroredStore, identity: string, health: HealthState, logger: Logger) {
    this.#store = store;
    this.#nodeIdentity = identity;
    this.watermark = new ReplicaWatermark('');
    this.#changes = new ChangeBroadcaster(() => this.watermark.appliedOffsets, logger);
    this.#health = health;
    this.#sync();
  }

  get changes(): ChangeFeed {
    return this.#changes;
  }

  /** Takes one of the owner's replica or health messages; false for any other kind. */
  take(message: { readonly type: string }): boolean {
    if (!isMirrorMessage(message)) return false;
    switch (message.type) {
      case 'applied': {
        this.#sync();
        const next = toOffsets(message.next);
        if (this.#changes.hasListeners) {
          this.#changes.emit({ kind: 'applied', records: unpackRecords(message.records), nextOffsets: next });
        }
        return true;
      }
      case 'restart':
        this.#nodeIdentity = message.identity;
        this.#sync();
        return true;
      case 'reset':
        this.watermark.abandonWaiters(message.reason);
        this.#changes.emit({ kind: 'reset', reason: message.reason });
        return true;
      case 'health':
        this.#health = message.health;
        for (const listener of this.#healthListeners) listener();
        return true;
      default:
        return false;
    }
  }

  /**
   * Brings reads and the watermark to what the owner has committed now, without a message (the in-process
   * replica's worker says it caught up before it sends the batch that did it).
   */
  refresh(): void {
    this.#sync();
  }

  /**
   * Moves reads to the store as committed now, and the watermark (every read's token) to the offsets saved
   * with exactly that data: the node may have committed more than its messages have said so far, and a
   * read must never return what its token does not name. Watches skip records they have passed.
   */
  #sync(): void {
    this.#store.advanceReads();
    const progress = this.#store.progressOfReads();
    // A store that has applied nothing yet saved no identity; the node's replica already reads a log.
    const identity = progress.logIdentity ?? this.#nodeIdentity;
    if (identity !== this.watermark.logIdentity) this.watermark.restart(progress.appliedOffsets, identity);
    this.watermark.advance(progress.appliedOffsets);
  }

  live(): boolean {
    return this.#health.live;
  }

  ready(): boolean {
    return this.#health.state === 'serving';
  }

  state(): NodeStateName {
    return this.#health.state;
  }

  onChange(listener: () => void): () => void {
    this.#healthListeners.add(listener);
    return () => this.#healthListeners.delete(listener);
  }
}
