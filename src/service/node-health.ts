import type { ReplicaProgressUpdates, ReplicaProgressView } from '../replica/replica-progress.js';

export type NodeStateName = 'starting' | 'serving' | 'lagging' | 'stopping';

/** Whether the node is alive and whether it is ready, for probes (gRPC health, /livez, /readyz) and Status. */
export interface NodeHealthView {
  /** The process can serve: listening, not stopping. */
  live(): boolean;
  /** state() === 'serving'. */
  ready(): boolean;
  state(): NodeStateName;
  /** Calls the listener after every change of live() or state(); returns the unsubscribe. */
  onChange(listener: () => void): () => void;
}

export interface NodeHealthOptions {
  /** How far behind the log the replica is. */
  readonly progress: ReplicaProgressView & ReplicaProgressUpdates;
  /** After the first catch-up, more records than this behind the log's end makes the node lagging; 0: off. */
  readonly maxReadyLag: number;
}

/**
 * The node's readiness: starting until the replica first catches up with the log (and is within the max
 * ready lag), then serving, lagging
 * while the replica rebuilds or (with a max ready lag) falls too far behind, and stopping once shutdown
 * begins, for good. The owner of the node reports catch-up and shutdown; the lag is re-read whenever the
 * replica learns the log's end anew.
 */
export class NodeHealth implements NodeHealthView {
  readonly #progress: ReplicaProgressView;
  readonly #maxReadyLag: number;
  readonly #listeners = new Set<() => void>();
  readonly #stopWatchingProgress: () => void;
  #state: NodeStateName = 'starting';
  #listening = false;
  #caughtUp = false;

  constructor(options: NodeHealthOptions) {
    this.#progress = options.progress;
    this.#maxReadyLag = options.maxReadyLag;
    this.#stopWatchingProgress = options.progress.onUpdate(() => this.#evaluate());
  }

  live(): boolean {
    return this.#listening && this.#state !== 'stopping';
  }

  ready(): boolean {
    return this.#state === 'serving';
  }

  state(): NodeStateName {
    return this.#state;
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The node accepts connections. */
  listening(): void {
    if (this.#listening) return;
    this.#listening = true;
    this.#notify();
  }

  /** The replica caught up with the log (true), or started over and must catch up again (false). */
  caughtUp(caughtUp: boolean): void {
    this.#caughtUp = caughtUp;
    this.#evaluate();
  }

  /** Shutdown began: not ready and not live from now on. */
  stopping(): void {
    this.#stopWatchingProgress();
    this.#moveTo('stopping');
  }

  /** Total records behind the log's end; partitions whose end is unknown count for nothing. */
  lagRecords(): number {
    let lag = 0;
    for (const partition of this.#progress.partitions()) lag += partition.lagRecords ?? 0;
    return lag;
  }

  #evaluate(): void {
    if (this.#state === 'stopping') return;
    const ready = this.#caughtUp && !(this.#maxReadyLag > 0 && this.lagRecords() > this.#maxReadyLag);
    // A node that never was ready is still starting: its first catch-up is not done while it is too far behind.
    if (this.#state === 'starting' && !ready) return;
    this.#moveTo(ready ? 'serving' : 'lagging');
  }

  #moveTo(state: NodeStateName): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#notify();
  }

  #notify(): void {
    for (const listener of this.#listeners) listener();
  }
}

/**
 * The node's health before its parts exist: live and `starting`, so that probes answer while the node opens
 * its log and, with --bootstrap-from, installs a peer's store (which happens before the store opens, so before
 * the node's NodeHealth can exist); from follow() on, whatever the node's NodeHealth says.
 */
export class HealthBeforeStart implements NodeHealthView {
  #real: NodeHealthView | null = null;
  readonly #listeners = new Set<() => void>();

  live(): boolean {
    return this.#real?.live() ?? true;
  }

  ready(): boolean {
    return this.#real?.ready() ?? false;
  }

  state(): NodeStateName {
    return this.#real?.state() ?? 'starting';
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** From now on, answers as `real` does (and passes its changes on). */
  follow(real: NodeHealthView): void {
    this.#real = real;
    real.onChange(() => this.#notify());
    this.#notify();
  }

  #notify(): void {
    for (const listener of this.#listeners) listener();
  }
}
