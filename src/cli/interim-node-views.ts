import { setTimeout as sleep } from 'node:timers/promises';
import type { Log } from '../log/log.js';
import type { Offsets } from '../offsets.js';
import { hasReached } from '../offsets.js';
import type { AppliedWatermark } from '../replica/applied-watermark.js';
import type { PartitionLag, ReplicaProgressView } from '../replica/replica-progress.js';
import type { NodeHealthView, NodeStateName } from '../service/node-health.js';

/*
 * INTERIM, for the metrics branch alone: minimal stand-ins for the node-state work's ReplicaProgress and
 * NodeHealth (issue 14's contract), so that the metrics can be wired and tested before it lands. Delete this
 * file at the merge and pass the real ones to the metrics instead.
 */

/** Applied offsets from the watermark; the log's end asked for every second. */
export class InterimReplicaProgress implements ReplicaProgressView {
  readonly #watermark: AppliedWatermark;
  #end: Offsets | null = null;
  #caughtUpAt: number | null = null;
  #bootstrapped = false;

  constructor(watermark: AppliedWatermark) {
    this.#watermark = watermark;
  }

  partitions(): readonly PartitionLag[] {
    const applied = this.#watermark.appliedOffsets;
    const end = this.#end;
    const numbers = [...new Set([...applied.keys(), ...(end?.keys() ?? [])])].sort((a, b) => a - b);
    return numbers.map((partition) => {
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
    return this.#caughtUpAt;
  }

  bootstrapRatio(): number {
    return this.#bootstrapped ? 1 : 0;
  }

  caughtUp(): void {
    this.#bootstrapped = true;
    this.#caughtUpAt = Date.now();
  }

  /** Asks the log for its end every second until the signal aborts. */
  async run(log: Log, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const askedAt = Date.now();
      try {
        this.#end = await log.endOffsets(AbortSignal.any([signal, AbortSignal.timeout(5_000)]));
        if (this.#bootstrapped && hasReached(this.#watermark.appliedOffsets, this.#end)) this.#caughtUpAt = askedAt;
      } catch {
        // Stay with the end last learnt.
      }
      await sleep(1_000, undefined, { signal, ref: false }).catch(() => {});
    }
  }
}

/** Starting until the first catch-up, serving after it, stopping once shutdown begins. */
export class InterimNodeHealth implements NodeHealthView {
  #state: NodeStateName = 'starting';
  #listening = false;
  readonly #listeners = new Set<() => void>();

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

  listening(): void {
    this.#listening = true;
    this.#notify();
  }

  caughtUp(caughtUp: boolean): void {
    if (this.#state === 'stopping') return;
    this.#state = caughtUp ? 'serving' : this.#state === 'starting' ? 'starting' : 'lagging';
    this.#notify();
  }

  stopping(): void {
    this.#state = 'stopping';
    this.#notify();
  }

  #notify(): void {
    for (const listener of this.#listeners) listener();
  }
}
