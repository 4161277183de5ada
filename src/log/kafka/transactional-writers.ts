import { raceAbort } from '../../abort.js';
import { abortError, Kvs2Error } from '../../errors.js';
import type { LogWrite, TentativeAppend } from '../log.js';
import {
  type ClientTarget,
  createTransactionalProducer,
  type Kvs2Producer,
  type Kvs2Transaction,
  TRANSACTION_TIMEOUT_MS,
} from './kafka-clients.js';
import { describeKafkaError } from './kafka-errors.js';
import type { KafkaLogLogger } from './kafka-log-options.js';
import { offsetToNumber } from './kafka-offsets.js';
import { type TransactionOutcome, transactionOutcomeCounter } from './transaction-outcomes.js';

/** How long commit() and abort() wait for the coordinator's answer (EndTxn takes a few ms). */
const END_TXN_TIMEOUT_MS = TRANSACTION_TIMEOUT_MS;

export interface TransactionalWritersOptions {
  readonly target: ClientTarget;
  readonly topic: string;
  /** The ids are `<idPrefix>-0` ... `<idPrefix>-<size - 1>`. */
  readonly idPrefix: string;
  readonly size: number;
  /** The log's description, for messages. */
  readonly description: string;
  readonly logger: KafkaLogLogger | undefined;
  readonly metrics: ClientTarget['metrics'];
}

/** One transactional id of the pool, used by one conditional write at a time. */
interface Member {
  readonly id: string;
  /**
   * Undefined until first used, and after a failure: the next begin makes a new producer, whose
   * InitProducerId takes the id over (aborting whatever the previous one left open).
   */
  producer: Kvs2Producer | undefined;
}

interface Waiter {
  readonly resolve: (member: Member) => void;
  readonly reject: (error: Kvs2Error) => void;
  readonly stopWaiting: () => void;
}

/**
 * The transactional producers of one node: conditional writes on Kafka (docs/cas-on-kafka.md, design d).
 * Each conditional write takes a transactional id of the pool for itself (the coordinator keeps one open
 * transaction per id), produces its records in one request inside a transaction, and hands the caller
 * their offset with commit() and abort(); the id goes back to the pool with the verdict. Calls beyond the
 * pool size wait for an id, within their signal: a burst of conditional writes is normal contention, and on
 * one partition they could not go faster anyway, since each verdict waits for those of the writes before it.
 *
 * Producers are made once and reused. After any failure (a produce or EndTxn that failed or went
 * unanswered, a producer fenced by the transaction timeout, a caller that gave up mid-produce) the member's
 * producer is closed and a new one takes the id over: its InitProducerId (producer id -1, epoch -1) makes
 * the coordinator abort at once whatever the old one left open, and its sequence numbers start afresh
 * (the library counts them before a produce is acknowledged, and never recounts them in a transaction).
 * The library also keeps a transaction refused with PRODUCER_FENCED open on its side: a new producer is
 * the only clean way on.
 */
export class TransactionalWriters {
  readonly #options: TransactionalWritersOptions;
  readonly #members: readonly Member[];
  /** Members nobody uses, the one idle longest first: an id reused right after its commit meets CONCURRENT_TRANSACTIONS. */
  readonly #idle: Member[];
  readonly #waiters: Waiter[] = [];
  /** Aborts of the tentative appends awaiting their verdict: close() calls them. */
  readonly #undecided = new Set<() => Promise<void>>();
  /** Commits and aborts under way: close() lets them finish before it closes the producers. */
  readonly #deciding = new Set<Promise<void>>();
  readonly #count: (outcome: TransactionOutcome) => void;
  #closed = false;
  #fencing: Promise<void> | undefined;

  constructor(options: TransactionalWritersOptions) {
    this.#options = options;
    this.#members = Array.from({ length: options.size }, (_, i) => ({
      id: `${options.idPrefix}-${i}`,
      producer: undefined,
    }));
    this.#idle = [...this.#members];
    this.#count = transactionOutcomeCounter(options.metrics);
  }

  /** The transactional ids of the pool. */
  get ids(): string[] {
    return this.#members.map((member) => member.id);
  }

  /**
   * Takes every id of the pool over (InitProducerId with producer id -1 and epoch -1): the coordinator
   * aborts at once whatever a previous run of this node left open under these ids and fences its producers.
   * Resolves once every id is this pool's. Call it before any append.
   */
  fence(): Promise<void> {
    // One at a time: an open() that gave up leaves its fencing running, and the next one waits for it.
    this.#fencing ??= Promise.all(
      this.#members.map(async (member) => {
        const transaction = await this.#begin(member);
        // Nothing was produced: the coordinator knows of no transaction, so cancel (local), not abort.
        await transaction.cancel();
      }),
    ).then(
      () => {},
      (error: unknown) => {
        this.#fencing = undefined;
        throw error;
      },
    );
    return this.#fencing;
  }

  /**
   * Writes records that all go to `partition` in a transaction of their own and resolves with their offset
   * and the verdict functions (see TentativeAppend). The signal bounds the wait for an id and the produce.
   */
  async append(partition: number, records: readonly LogWrite[], signal: AbortSignal): Promise<TentativeAppend> {
    const what = `a conditional write to partition ${partition} of ${this.#options.description}`;
    if (this.#closed) throw this.#shuttingDown();
    const member = await this.#acquire(signal, what);
    if (signal.aborted) {
      this.#release(member);
      throw abortError(signal, `writing ${what}`);
    }
    // A caller that gives up closes the producer, so that the library stops retrying at once; the member
    // is then renewed, which aborts whatever the produce may have left open.
    const giveUp = (): void => this.#retire(member);
    signal.addEventListener('abort', giveUp, { once: true });
    const produced = this.#produce(member, partition, records, signal).finally(() =>
      signal.removeEventListener('abort', giveUp),
    );
    return raceAbort(produced, signal, `writing ${what}`);
  }

  /** Aborts the undecided appends, refuses new ones and closes every producer. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const waiter of this.#waiters.splice(0)) {
      waiter.stopWaiting();
      waiter.reject(this.#shuttingDown());
    }
    await Promise.all([...this.#undecided].map((abort) => abort()));
    await Promise.allSettled([...this.#deciding]);
    // Busy members close their producer when they come back (#release); a renewal under way is cut short.
    for (const member of this.#members) this.#retire(member);
  }

  async #produce(
    member: Member,
    partition: number,
    records: readonly LogWrite[],
    signal: AbortSignal,
  ): Promise<TentativeAppend> {
    let transaction: Kvs2Transaction;
    try {
      transaction = await this.#begin(member);
    } catch (error) {
      // InitProducerId or FindCoordinator failed: nothing is open; #begin retired the producer.
      this.#release(member);
      throw this.#failure('cannot begin a transaction', error);
    }
    const topic = this.#options.topic;
    let offset: number;
    try {
      const result = await transaction.send({
        messages: records.map(({ key, value }) => ({ topic, partition, key, value })),
      });
      const base = result.offsets?.find((o) => o.topic === topic && o.partition === partition)?.offset;
      if (base === undefined) throw new Error(`no offset acknowledged for partition ${partition}`);
      offset = offsetToNumber(base, `partition ${partition}`);
      // The caller was told already: nobody would decide these records.
      if (signal.aborted) throw abortError(signal, 'writing a conditional write');
    } catch (error) {
      // The partition may be in the transaction and the records written: a new producer aborts them at once.
      void this.#renew(member).then(() => this.#release(member));
      throw this.#failure('cannot write in a transaction', error);
    }
    return this.#tentative(member, transaction, partition, offset);
  }

  /**
   * The caller's handle on an open transaction. The first of commit() and abort() decides; if neither comes
   * within the transaction timeout, the transaction is aborted here too (the coordinator aborts it by then)
   * and the id goes back to the pool.
   */
  #tentative(member: Member, transaction: Kvs2Transaction, partition: number, offset: number): TentativeAppend {
    const what = `the conditional write at offset ${offset} of partition ${partition} of ${this.#options.description}`;
    let verdict: { readonly commit: boolean; readonly why: string; readonly settled: Promise<void> } | undefined;
    const decide = (commit: boolean, why: string): Promise<void> => {
      if (verdict === undefined) {
        clearTimeout(timer);
        this.#undecided.delete(onClose);
        const settled = commit ? this.#commit(member, transaction, what) : this.#abort(member, transaction, what);
        verdict = { commit, why, settled };
        this.#deciding.add(settled);
        const done = (): boolean => this.#deciding.delete(settled);
        settled.then(done, done);
      }
      return verdict.settled;
    };
    const onClose = (): Promise<void> => decide(false, `${this.#options.description} closed`);
    this.#undecided.add(onClose);
    const timer = setTimeout(
      () => void decide(false, `not decided within ${TRANSACTION_TIMEOUT_MS} ms`),
      TRANSACTION_TIMEOUT_MS,
    );
    timer.unref();
    return {
      partition,
      offset,
      commit: () => {
        const settled = decide(true, 'commit()');
        if (verdict?.commit === false) {
          const code = this.#closed ? 'SHUTTING_DOWN' : 'LOG_UNAVAILABLE';
          return Promise.reject(new Kvs2Error(code, `${what} was aborted, not committed (${verdict.why})`));
        }
        return settled;
      },
      abort: async () => {
        if (verdict?.commit === true) return;
        await decide(false, 'abort()');
      },
    };
  }

  /** Resolves once the coordinator has the commit; any doubt is LOG_OUTCOME_UNKNOWN. */
  async #commit(member: Member, transaction: Kvs2Transaction, what: string): Promise<void> {
    try {
      await withinMs(transaction.commit(), END_TXN_TIMEOUT_MS, 'EndTxn');
    } catch (error) {
      // Unanswered, lost, refused as fenced (the timeout aborted it, or a retried EndTxn met the epoch its
      // first try ended): whoever wrote it reads the partition past the offset to learn the outcome.
      this.#count('unknown');
      void this.#renew(member).then(() => this.#release(member));
      throw new Kvs2Error(
        'LOG_OUTCOME_UNKNOWN',
        `${what}: its commit's outcome is unknown: ${describeKafkaError(error)}`,
        {
          cause: error,
        },
      );
    }
    this.#count('committed');
    this.#release(member);
  }

  /** Never rejects: an abort the coordinator does not take is left to the new producer, or to the timeout. */
  async #abort(member: Member, transaction: Kvs2Transaction, what: string): Promise<void> {
    this.#count('aborted');
    try {
      await withinMs(transaction.abort(), END_TXN_TIMEOUT_MS, 'EndTxn');
    } catch (error) {
      this.#options.logger?.warn(
        { err: error },
        `${what}: the abort was not taken (${describeKafkaError(error)}); a new producer takes the id over`,
      );
      void this.#renew(member).then(() => this.#release(member));
      return;
    }
    this.#release(member);
  }

  /** Begins a transaction, making the member's producer (and taking the id over) if it has none. */
  async #begin(member: Member): Promise<Kvs2Transaction> {
    const producer = member.producer ?? createTransactionalProducer(this.#options.target, member.id);
    member.producer = producer;
    try {
      // The ids are used only when the producer registers (InitProducerId): -1/-1 means "no expectation".
      // The library's default, 0/0, is refused with PRODUCER_FENCED once the id belongs to a producer id.
      return await producer.beginTransaction({ producerId: -1n, producerEpoch: -1 });
    } catch (error) {
      // The library keeps a transaction it failed to begin as its current one.
      this.#retire(member, producer);
      throw error;
    }
  }

  /** Closes the member's producer and makes a new one take the id over. Never rejects. */
  async #renew(member: Member): Promise<void> {
    this.#retire(member);
    if (this.#closed) return;
    try {
      const transaction = await this.#begin(member);
      await transaction.cancel();
    } catch (error) {
      if (this.#closed) return;
      this.#options.logger?.warn(
        { err: error, transactionalId: member.id },
        `${this.#options.description}: cannot take transactional id ${member.id} over again (its next conditional write retries): ${describeKafkaError(error)}`,
      );
    }
  }

  /** Closes the member's producer (if it is still `producer`): calls under way on it fail at once. */
  #retire(member: Member, producer = member.producer): void {
    if (producer === undefined || member.producer !== producer) return;
    member.producer = undefined;
    producer.close().catch((error: unknown) => {
      this.#options.logger?.warn(
        { err: error, transactionalId: member.id },
        `${this.#options.description}: closing the producer of ${member.id} failed: ${describeKafkaError(error)}`,
      );
    });
  }

  #acquire(signal: AbortSignal, what: string): Promise<Member> {
    if (signal.aborted) return Promise.reject(abortError(signal, `writing ${what}`));
    const idle = this.#idle.shift();
    if (idle !== undefined) return Promise.resolve(idle);
    return new Promise<Member>((resolve, reject) => {
      const onAbort = (): void => {
        const at = this.#waiters.indexOf(waiter);
        if (at >= 0) this.#waiters.splice(at, 1);
        reject(abortError(signal, `waiting for a transactional id for ${what}`));
      };
      const waiter: Waiter = { resolve, reject, stopWaiting: () => signal.removeEventListener('abort', onAbort) };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  #release(member: Member): void {
    if (this.#closed) {
      this.#retire(member);
      return;
    }
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      waiter.stopWaiting();
      waiter.resolve(member);
      return;
    }
    this.#idle.push(member);
  }

  #failure(what: string, error: unknown): Kvs2Error {
    if (error instanceof Kvs2Error) return error;
    if (this.#closed) return this.#shuttingDown();
    return new Kvs2Error('LOG_UNAVAILABLE', `${this.#options.description}: ${what}: ${describeKafkaError(error)}`, {
      cause: error,
    });
  }

  #shuttingDown(): Kvs2Error {
    return new Kvs2Error('SHUTTING_DOWN', `${this.#options.description} is closing`);
  }
}

/** Settles with `work`, or rejects once `ms` have passed without an answer (the work goes on, unheard). */
function withinMs<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    work.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
