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
  /** Makes the next store read start a new LMDB read transaction (one begun before a commit misses it). */
  readonly #refreshReads: () => void;
  #health: HealthState;
  readonly #healthListeners = new Set<() => void>();

  constructor(replica: ReplicaState, health: HealthState, refreshReads: () => void, logger: Logger) {
    this.watermark = new ReplicaWatermark(replica.identity);
    this.watermark.restart(toOffsets(replica.applied), replica.identity);
    this.#changes = new ChangeBroadcaster(() => this.watermark.appliedOffsets, logger);
    this.#refreshReads = refreshReads;
    this.#health = health;
  }

  get changes(): ChangeFeed {
    return this.#changes;
  }

  /** Takes one of the node's replica or health messages; false for any other kind. */
  take(message: ToWorker): boolean {
    switch (message.type) {
      case 'applied': {
        // The commit is done (the node sent this after it): reads from now on must see it, so the read
        // transaction lmdb-js keeps for this thread is dropped before any waiting read is woken.
        this.#refreshReads();
        const next = toOffsets(message.next);
        this.watermark.advance(next);
        if (this.#changes.hasListeners) {
          this.#changes.emit({ kind: 'applied', records: unpackRecords(message.records), nextOffsets: next });
        }
        return true;
      }
      case 'restart':
        this.#refreshReads();
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
