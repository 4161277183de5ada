import type { Logger } from '../../logger.js';
import { ReplicaWatermark } from '../../replica/applied-watermark.js';
import { ChangeBroadcaster, type ChangeFeed } from '../../replica/change-feed.js';
import type { NodeHealthView, NodeStateName } from '../../service/node-health.js';
import { unpackRecords } from './record-packing.js';
import { type HealthState, type ReplicaState, type ToWorker, toOffsets } from './worker-messages.js';

/** What a serving worker knows of the node's replica and health: the node's messages, applied in order. */
export class ReplicaMirror implements NodeHealthView {
  readonly watermark: ReplicaWatermark;
  readonly #changes: ChangeBroadcaster;
  /** Moves the worker's reads to a read transaction begun now (LmdbStore.advanceReads). */
  readonly #advanceReads: () => void;
  #health: HealthState;
  readonly #healthListeners = new Set<() => void>();

  constructor(replica: ReplicaState, health: HealthState, advanceReads: () => void, logger: Logger) {
    this.watermark = new ReplicaWatermark(replica.identity);
    this.watermark.restart(toOffsets(replica.applied), replica.identity);
    this.#changes = new ChangeBroadcaster(() => this.watermark.appliedOffsets, logger);
    this.#advanceReads = advanceReads;
    this.#health = health;
  }

  get changes(): ChangeFeed {
    return this.#changes;
  }

  /** Takes one of the node's replica or health messages; false for any other kind. */
  take(message: ToWorker): boolean {
    switch (message.type) {
      case 'applied': {
        // The commit is done (the node sent this after it): reads from now on see it, and only now, when the
        // watermark (every read's token) names it; before any waiting read is woken.
        this.#advanceReads();
        const next = toOffsets(message.next);
        this.watermark.advance(next);
        if (this.#changes.hasListeners) {
          this.#changes.emit({ kind: 'applied', records: unpackRecords(message.records), nextOffsets: next });
        }
        return true;
      }
      case 'restart':
        this.#advanceReads();
        this.watermark.restart(toOffsets(message.replica.applied), message.replica.identity);
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
