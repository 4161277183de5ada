import { abortError, Kvs2Error } from '../../errors.js';
import type { LogPosition } from '../log.js';
import { describeKafkaError } from './kafka-errors.js';

/** One record on its way to a partition. */
export interface OutgoingRecord {
  readonly key: Buffer;
  readonly value: Buffer | null;
  readonly partition: number;
}

/** Publishes records in one produce call; resolves with each record's position, in the same order. */
export type SendRecords = (records: readonly OutgoingRecord[]) => Promise<LogPosition[]>;

export interface AppendBatcherOptions {
  readonly send: SendRecords;
  /**
   * How long the first append of a batch waits for others before the batch is sent. With 0 it waits
   * only for the end of the current event-loop turn, so appends decoded from one socket read still share
   * a send; under load batches form anyway, from appends that queue while a send is in flight.
   */
  readonly lingerMs: number;
  /** Most record bytes one send carries (one record larger than this goes alone). */
  readonly maxSendBytes: number;
  /**
   * Most record bytes per partition in one send: the topic's max.message.bytes caps a partition's batch.
   * A function because it is read again when the log adopts a recreated topic.
   */
  readonly maxPartitionBytes: () => number;
  /** An append not acknowledged within this fails with LOG_UNAVAILABLE. */
  readonly timeoutMs: number;
  /** The broker leading a partition now, or -1 when unknown: sends go one per leader. */
  readonly leaderOf: (partition: number) => number;
  /** Names the log in error messages. */
  readonly description: string;
}

/**
 * Kafka's record batch header, and the most a record's own framing takes (length, attributes, timestamp
 * and offset deltas, key and value lengths, header count), so that size caps hold on the wire.
 */
const BATCH_OVERHEAD_BYTES = 61;
const RECORD_OVERHEAD_BYTES = 32;

type AppendState = 'queued' | 'sending' | 'settled';

interface PendingAppend {
  readonly record: OutgoingRecord;
  readonly bytes: number;
  readonly resolve: (position: LogPosition) => void;
  readonly reject: (error: Error) => void;
  readonly signal: AbortSignal | undefined;
  /** performance.now() past which the append fails. */
  readonly deadline: number;
  state: AppendState;
}

/** Appends leaving in one send to one leader, and the bytes they take. */
interface Batch {
  readonly appends: PendingAppend[];
  readonly partitionBytes: Map<number, number>;
  bytes: number;
}

/**
 * Groups concurrent appends into few produce calls, like a database's group commit: a leader (broker)
 * has at most one send in flight, and every append that arrives meanwhile for its partitions leaves in
 * the next one. An idle leader's first append waits only `lingerMs` (by default, to the end of the
 * event-loop turn). So a lone writer pays one round trip, and many writers share round trips instead of
 * each paying for a small request: the cost of a produce call is mostly per call, not per record.
 *
 * A partition has at most one send in flight (also across a leader change), and its appends leave in the
 * order they came, so they reach Kafka in append order and the idempotent producer's sequence numbers
 * never race. A broker that stopped answering (until Kafka elects new leaders, about the brokers' session
 * timeout) holds back the appends of its own partitions only.
 *
 * Every append settles within `timeoutMs` (or when its signal aborts): if it was still queued, it is
 * dropped and never sent; if its send was in flight, the caller is told it failed although the record
 * may still land (the outcome is unknown, as with any timed-out write). It never resolves unless Kafka
 * acknowledged the record.
 */
export class AppendBatcher {
  readonly #options: AppendBatcherOptions;
  #queue: PendingAppend[] = [];
  /** Partitions with a send in flight: their new appends wait for it. */
  readonly #busyPartitions = new Set<number>();
  /** Leaders with a send in flight: appends to their partitions wait for it (-1: leader unknown). */
  readonly #busyLeaders = new Set<number>();
  readonly #inFlight = new Set<Promise<void>>();
  /**
   * Unsettled appends by the signal they were given, with one abort listener per signal: the appends of a
   * `Write` share their call's signal, and a listener each (EventTarget checks each new listener against
   * the others) cost a Write of 100 mutations ~5% of the node's CPU.
   */
  readonly #bySignal = new Map<AbortSignal, { appends: Set<PendingAppend>; onAbort: () => void }>();
  /**
   * Unsettled appends in arrival order, and one timer for the oldest. Every append gets the same timeout,
   * so deadlines grow in this order and one timer serves them all (a timer per append was ~3% of the
   * node's CPU for a Write of 100 mutations). Settled appends leave lazily, from the front.
   */
  #byDeadline: PendingAppend[] = [];
  #oldest = 0;
  #unsettled = 0;
  #deadlineTimer: NodeJS.Timeout | undefined;
  /** Set while a dispatch is scheduled: cancels it. */
  #cancelLinger: (() => void) | undefined;
  #closing = false;
  #sends = 0;

  constructor(options: AppendBatcherOptions) {
    this.#options = options;
  }

  /** How many produce calls were made so far: with batching, far fewer than appends under load. */
  get sendCount(): number {
    return this.#sends;
  }

  append(record: OutgoingRecord, signal?: AbortSignal): Promise<LogPosition> {
    if (this.#closing) {
      return Promise.reject(new Kvs2Error('SHUTTING_DOWN', `${this.#options.description} is closing`));
    }
    if (signal?.aborted) return Promise.reject(abortError(signal, 'append'));
    return new Promise<LogPosition>((resolve, reject) => {
      const pending: PendingAppend = {
        record,
        bytes: record.key.length + (record.value?.length ?? 0) + RECORD_OVERHEAD_BYTES,
        resolve,
        reject,
        signal,
        deadline: performance.now() + this.#options.timeoutMs,
        state: 'queued',
      };
      if (signal !== undefined) this.#watchSignal(signal, pending);
      this.#trackDeadline(pending);
      this.#queue.push(pending);
      // Appends to a busy partition or leader leave when its send returns; others after the linger.
      if (
        !this.#busyPartitions.has(record.partition) &&
        !this.#busyLeaders.has(this.#options.leaderOf(record.partition))
      ) {
        this.#schedule();
      }
    });
  }

  /** Stops taking appends, sends what is queued and waits until every send has settled. */
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

  #trackDeadline(pending: PendingAppend): void {
    this.#dropSettledOldest();
    this.#byDeadline.push(pending);
    this.#unsettled++;
    if (this.#deadlineTimer === undefined) this.#armDeadlineTimer();
  }

  #armDeadlineTimer(): void {
    const oldest = this.#byDeadline[this.#oldest];
    if (oldest === undefined) {
      this.#deadlineTimer = undefined;
      return;
    }
    this.#deadlineTimer = setTimeout(() => this.#expire(), Math.max(0, oldest.deadline - performance.now()));
  }

  /** Fails every append whose deadline passed, then waits for the next deadline. */
  #expire(): void {
    const now = performance.now();
    for (;;) {
      this.#dropSettledOldest();
      const oldest = this.#byDeadline[this.#oldest];
      if (oldest === undefined || oldest.deadline > now) break;
      this.#fail(oldest, this.#timeoutError(oldest));
    }
    this.#armDeadlineTimer();
  }

  /** Moves past settled appends at the front (once none is unsettled, #settle has emptied the list). */
  #dropSettledOldest(): void {
    const list = this.#byDeadline;
    while (this.#oldest < list.length && list[this.#oldest]?.state === 'settled') this.#oldest++;
    if (this.#oldest > 1024 && this.#oldest * 2 > list.length) {
      this.#byDeadline = list.slice(this.#oldest);
      this.#oldest = 0;
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
      const sending: Promise<void> = this.#send(batch.appends).finally(() => {
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
    const maxPartitionBytes = this.#options.maxPartitionBytes();
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
      const leader = this.#options.leaderOf(partition);
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

  async #send(batch: PendingAppend[]): Promise<void> {
    let positions: LogPosition[];
    try {
      positions = await this.#options.send(batch.map((pending) => pending.record));
    } catch (error) {
      const failure = new Kvs2Error(
        'LOG_UNAVAILABLE',
        `${this.#options.description}: append failed: ${describeKafkaError(error)}`,
        { cause: error },
      );
      for (const pending of batch) this.#fail(pending, failure);
      return;
    }
    batch.forEach((pending, i) => {
      const position = positions[i];
      // A caller that timed out or gave up meanwhile was already told; its record is written all the same.
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
    // With nothing left to time out, no timer may hold the process open.
    if (--this.#unsettled === 0) {
      clearTimeout(this.#deadlineTimer);
      this.#deadlineTimer = undefined;
      this.#byDeadline = [];
      this.#oldest = 0;
    }
    const signal = pending.signal;
    const watched = signal === undefined ? undefined : this.#bySignal.get(signal);
    if (signal === undefined || watched === undefined) return;
    watched.appends.delete(pending);
    if (watched.appends.size === 0) {
      signal.removeEventListener('abort', watched.onAbort);
      this.#bySignal.delete(signal);
    }
  }

  /** Fails the appends given `signal` when it aborts; one listener however many appends share it. */
  #watchSignal(signal: AbortSignal, pending: PendingAppend): void {
    const watched = this.#bySignal.get(signal);
    if (watched !== undefined) {
      watched.appends.add(pending);
      return;
    }
    const appends = new Set([pending]);
    const onAbort = (): void => {
      const error = abortError(signal, 'append');
      for (const append of [...appends]) this.#fail(append, error);
    };
    this.#bySignal.set(signal, { appends, onAbort });
    signal.addEventListener('abort', onAbort, { once: true });
  }

  #timeoutError(pending: PendingAppend): Kvs2Error {
    const { description, timeoutMs } = this.#options;
    return new Kvs2Error(
      'LOG_UNAVAILABLE',
      pending.state === 'queued'
        ? `${description}: the record could not be sent within ${timeoutMs} ms (brokers unreachable?); it was not written`
        : `${description}: no acknowledgement within ${timeoutMs} ms (brokers unreachable?); the record may or may not be written`,
    );
  }
}
