import { setTimeout as sleep } from 'node:timers/promises';
import { backoffMs } from '../../abort.js';
import { abortError, Kvs2Error } from '../../errors.js';
import type { LogPosition } from '../log.js';
import { SignalGroups } from '../signal-groups.js';

/** One record on its way to a partition. */
export interface OutgoingRecord {
  readonly key: Buffer;
  readonly value: Buffer | null;
  readonly partition: number;
}

/** A produce request that failed; `retryable` when the same records may simply be sent again later. */
export class SendFailure extends Error {
  override readonly name = 'SendFailure';

  constructor(
    message: string,
    readonly retryable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Where the batcher's records go: one produce request per send, and who leads each partition. */
export interface RecordSender {
  /**
   * Publishes records in one produce request to `leader`, once (the batcher decides about retries);
   * resolves with each record's position, in the same order, or rejects with a SendFailure. The batcher
   * has at most one send in flight per leader.
   */
  send(records: readonly OutgoingRecord[], leader: number): Promise<LogPosition[]>;
  /** The broker leading a partition now, or -1 when unknown: sends go one per leader. */
  leaderOf(partition: number): number;
  /** Most record bytes per partition in one send: the topic's max.message.bytes caps a partition's batch. */
  readonly maxPartitionBytes: number;
}

export interface AppendBatcherOptions {
  /**
   * How long the first append of a batch waits for others before the batch is sent. With 0 it waits
   * only for the end of the current event-loop turn, so appends decoded from one socket read still share
   * a send; under load batches form anyway, from appends that queue while a send is in flight.
   */
  readonly lingerMs: number;
  /** Most record bytes one send carries (one record larger than this goes alone). */
  readonly maxSendBytes: number;
  /** Names the log in error messages. */
  readonly description: string;
}

/**
 * Kafka's record batch header, and the most a record's own framing takes (length, attributes, timestamp
 * and offset deltas, key and value lengths, header count), so that size caps hold on the wire.
 */
const BATCH_OVERHEAD_BYTES = 61;
const RECORD_OVERHEAD_BYTES = 32;
/** Pauses between failed sends: long enough not to hammer a broker that is down, short enough to follow a new leader soon. */
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 1_000;

type AppendState = 'queued' | 'sending' | 'settled';

interface PendingAppend {
  readonly record: OutgoingRecord;
  readonly bytes: number;
  readonly resolve: (position: LogPosition) => void;
  readonly reject: (error: Error) => void;
  readonly signal: AbortSignal;
  state: AppendState;
  /** Sends of this append that failed: the pause before its next one grows with them. */
  failedSends: number;
}

/** Appends leaving in one send to one leader, and the bytes they take. */
interface Batch {
  readonly appends: PendingAppend[];
  readonly partitionBytes: Map<number, number>;
  bytes: number;
}

/**
 * Groups concurrent appends into few produce requests, like a database's group commit: a leader (broker)
 * has at most one send in flight, and every append that arrives meanwhile for its partitions leaves in
 * the next one. An idle leader's first append waits only `lingerMs` (by default, to the end of the
 * event-loop turn). So a lone writer pays one round trip, and many writers share round trips instead of
 * each paying for a small request: the cost of a produce request is mostly per request, not per record.
 *
 * A partition has at most one send in flight (also across a leader change), and its appends leave in the
 * order they came, so they reach Kafka in append order and the idempotent producer's sequence numbers
 * never race. A broker that stopped answering holds back the appends of its own partitions only.
 *
 * The caller's signal is the only deadline. An append whose signal aborts is failed at once with the
 * abort's error. If it was still queued, it is dropped and never sent; if its send was in flight, the
 * caller is told it failed although the record may still land (the outcome is unknown, as with any
 * timed-out write). A send that fails retryably (a broker down, a leader moving) is sent again after a
 * pause, with only the appends whose callers still wait: a record is never sent after its caller was
 * told it failed. An append never resolves unless Kafka acknowledged the record.
 */
export class AppendBatcher {
  readonly #sender: RecordSender;
  readonly #options: AppendBatcherOptions;
  #queue: PendingAppend[] = [];
  /** Partitions with a send in flight (or pausing before its retry): their new appends wait for it. */
  readonly #busyPartitions = new Set<number>();
  /** Leaders with a send in flight: appends to their partitions wait for it (-1: leader unknown). */
  readonly #busyLeaders = new Set<number>();
  readonly #inFlight = new Set<Promise<void>>();
  readonly #bySignal = new SignalGroups<PendingAppend>((append, signal) =>
    this.#fail(append, abortError(signal, `appending to ${this.#options.description}`)),
  );
  /** Set while a dispatch is scheduled: cancels it. */
  #cancelLinger: (() => void) | undefined;
  #closing = false;
  #sends = 0;

  constructor(sender: RecordSender, options: AppendBatcherOptions) {
    this.#sender = sender;
    this.#options = options;
  }

  /** How many produce requests were made so far: with batching, far fewer than appends under load. */
  get sendCount(): number {
    return this.#sends;
  }

  append(record: OutgoingRecord, signal: AbortSignal): Promise<LogPosition> {
    if (this.#closing) {
      return Promise.reject(new Kvs2Error('SHUTTING_DOWN', `${this.#options.description} is closing`));
    }
    if (signal.aborted) return Promise.reject(abortError(signal, `appending to ${this.#options.description}`));
    return new Promise<LogPosition>((resolve, reject) => {
      const pending: PendingAppend = {
        record,
        bytes: record.key.length + (record.value?.length ?? 0) + RECORD_OVERHEAD_BYTES,
        resolve,
        reject,
        signal,
        state: 'queued',
        failedSends: 0,
      };
      this.#bySignal.add(signal, pending);
      this.#queue.push(pending);
      // Appends to a busy partition or leader leave when its send returns; others after the linger.
      if (
        !this.#busyPartitions.has(record.partition) &&
        !this.#busyLeaders.has(this.#sender.leaderOf(record.partition))
      ) {
        this.#schedule();
      }
    });
  }

  /**
   * Stops taking appends, sends what is queued and waits until every pending append has settled: each
   * is acknowledged or its signal aborts (failed sends are retried as usual).
   */
  async close(): Promise<void> {
    this.#closing = true;
    this.#cancelLinger?.();
    this.#cancelLinger = undefined;
    for (;;) {
      this.#dispatch();
      if (this.#inFlight.size === 0) return;
      await Promise.all(this.#inFlight);
    }
  }

  #schedule(): void {
    if (this.#cancelLinger !== undefined) return;
    const fire = (): void => {
      this.#cancelLinger = undefined;
      this.#dispatch();
    };
    // setTimeout(0) would still wait about a millisecond: setImmediate runs right after this turn's I/O.
    if (this.#options.lingerMs === 0) {
      const immediate = setImmediate(fire);
      this.#cancelLinger = () => clearImmediate(immediate);
    } else {
      const timer = setTimeout(fire, this.#options.lingerMs);
      this.#cancelLinger = () => clearTimeout(timer);
    }
  }

  /** Sends every queued append whose partition and leader are free, one send per leader, within the caps. */
  #dispatch(): void {
    for (const [leader, batch] of this.#takeBatches()) {
      const partitions = [...batch.partitionBytes.keys()];
      for (const partition of partitions) this.#busyPartitions.add(partition);
      this.#busyLeaders.add(leader);
      this.#sends++;
      const sending: Promise<void> = this.#send(batch.appends, leader).finally(() => {
        for (const partition of partitions) this.#busyPartitions.delete(partition);
        this.#busyLeaders.delete(leader);
        this.#inFlight.delete(sending);
        // What queued up during the send goes now: it has waited long enough.
        this.#dispatch();
      });
      this.#inFlight.add(sending);
    }
  }

  /** The next send of each free leader. */
  #takeBatches(): Map<number, Batch> {
    const maxPartitionBytes = this.#sender.maxPartitionBytes;
    const byLeader = new Map<number, Batch>();
    // Leaders whose send in this pass is one oversized append alone.
    const aloneLeaders = new Set<number>();
    // Partitions that take nothing more in this pass: busy, or an append of theirs did not fit (the
    // ones after it must not overtake it).
    const closed = new Set(this.#busyPartitions);
    let taken = false;
    for (const pending of this.#queue) {
      const { partition } = pending.record;
      if (pending.state !== 'queued' || closed.has(partition)) continue;
      const leader = this.#sender.leaderOf(partition);
      if (this.#busyLeaders.has(leader) || aloneLeaders.has(leader)) {
        closed.add(partition);
        continue;
      }
      const batch = byLeader.get(leader);
      if (BATCH_OVERHEAD_BYTES + pending.bytes > maxPartitionBytes || pending.bytes > this.#options.maxSendBytes) {
        // Beyond a cap on its own: it goes alone (once its partition's earlier appends are sent), so that
        // if Kafka refuses it, it takes no other append down with it.
        closed.add(partition);
        if (batch !== undefined) continue;
        byLeader.set(leader, {
          appends: [pending],
          partitionBytes: new Map([[partition, pending.bytes]]),
          bytes: pending.bytes,
        });
        aloneLeaders.add(leader);
      } else {
        const next: Batch = batch ?? { appends: [], partitionBytes: new Map(), bytes: 0 };
        const partitionBytes = (next.partitionBytes.get(partition) ?? BATCH_OVERHEAD_BYTES) + pending.bytes;
        if (next.bytes + pending.bytes > this.#options.maxSendBytes || partitionBytes > maxPartitionBytes) {
          closed.add(partition);
          continue;
        }
        next.partitionBytes.set(partition, partitionBytes);
        next.bytes += pending.bytes;
        next.appends.push(pending);
        byLeader.set(leader, next);
      }
      pending.state = 'sending';
      taken = true;
    }
    if (taken || this.#queue.some((pending) => pending.state === 'settled')) {
      this.#queue = this.#queue.filter((pending) => pending.state === 'queued');
    }
    return byLeader;
  }

  /**
   * Sends one batch and settles its appends. After a retryable failure, the appends whose callers still
   * wait go back to the front of the queue (before any later append of their partitions), and the leader
   * and partitions stay busy through a pause that grows with each failure.
   */
  async #send(batch: PendingAppend[], leader: number): Promise<void> {
    let positions: LogPosition[];
    try {
      positions = await this.#sender.send(
        batch.map((pending) => pending.record),
        leader,
      );
    } catch (error) {
      const retryable = error instanceof SendFailure && error.retryable;
      const waiting = batch.filter((pending) => pending.state === 'sending');
      if (!retryable) {
        const failure = new Kvs2Error(
          'LOG_UNAVAILABLE',
          `${this.#options.description}: append failed: ${error instanceof Error ? error.message : String(error)}`,
          { cause: error },
        );
        for (const pending of waiting) this.#fail(pending, failure);
        return;
      }
      let failedSends = 0;
      for (const pending of waiting) {
        pending.state = 'queued';
        failedSends = Math.max(failedSends, ++pending.failedSends);
      }
      if (waiting.length === 0) return;
      this.#queue = [...waiting, ...this.#queue];
      await sleep(backoffMs(failedSends - 1, RETRY_MIN_MS, RETRY_MAX_MS));
      return;
    }
    batch.forEach((pending, i) => {
      const position = positions[i];
      // A caller that gave up meanwhile was already told; its record is written all the same.
      if (pending.state === 'settled') return;
      if (position === undefined) {
        this.#fail(pending, new Kvs2Error('LOG_UNAVAILABLE', `${this.#options.description}: no offset acknowledged`));
        return;
      }
      this.#settle(pending);
      pending.resolve(position);
    });
  }

  #fail(pending: PendingAppend, error: Error): void {
    if (pending.state === 'settled') return;
    this.#settle(pending);
    pending.reject(error);
  }

  #settle(pending: PendingAppend): void {
    pending.state = 'settled';
    this.#bySignal.delete(pending.signal, pending);
  }
}
