import type { Offsets } from '../../src/offsets.js';

/**
 * What the clients did and saw, as they saw it: every write with its outcome and, when acknowledged, the
 * log position its token names; every read with the tokens it passed and the token it got back.
 * Times are milliseconds since the run started, taken on the client.
 */

/** `ok`: acknowledged; `failed`: refused, so certainly not written; `unknown`: may or may not be written. */
export type WriteOutcome = 'ok' | 'failed' | 'unknown';

export interface WriteOp {
  readonly id: number;
  readonly client: string;
  readonly node: string;
  readonly rpc: 'Set' | 'Write';
  readonly key: string;
  /** null for a delete. Every put writes a value no other write uses, so a value names its write. */
  readonly value: string | null;
  readonly invokedMs: number;
  completedMs: number;
  outcome: WriteOutcome;
  /** The position the token names (acknowledged writes only). */
  position?: { readonly partition: number; readonly offset: number };
  /** The token as the node sent it, handed to readers. */
  token?: Buffer;
  error?: string;
}

export interface ReadOp {
  readonly id: number;
  readonly client: string;
  readonly node: string;
  readonly rpc: 'Get' | 'MultiGet';
  readonly consistency: 'local' | 'latest';
  readonly keys: readonly string[];
  /** The merged offsets of the tokens passed in `after`. */
  readonly after: Offsets;
  /** The acknowledged write whose token was passed, if any. */
  readonly afterWrite?: number;
  readonly invokedMs: number;
  completedMs: number;
  ok: boolean;
  /** Per key, what the node answered: a value, or null for NOT_FOUND. */
  values?: ReadonlyArray<string | null>;
  /** The offsets of the token the node answered with. */
  replied?: Offsets;
  error?: string;
}

/** A nemesis action or a step of the run, for the timeline of a report. */
export interface RunEvent {
  readonly atMs: number;
  readonly what: string;
}

export class History {
  readonly writes: WriteOp[] = [];
  readonly reads: ReadOp[] = [];
  readonly events: RunEvent[] = [];
  readonly #startedAt: number;
  /** The last acknowledged writes, for readers to pass their tokens. */
  readonly recentAcked: WriteOp[] = [];

  constructor(startedAt: number) {
    this.#startedAt = startedAt;
  }

  now(): number {
    return Date.now() - this.#startedAt;
  }

  event(what: string): void {
    this.events.push({ atMs: this.now(), what });
  }

  acked(write: WriteOp): void {
    this.recentAcked.push(write);
    if (this.recentAcked.length > 64) this.recentAcked.shift();
  }
}
