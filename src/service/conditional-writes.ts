import { abortError, isKvs2Error, Kvs2Error } from '../errors.js';
import type { LogPosition, LogWrite, TentativeAppend } from '../log/log.js';
import type { AppliedWatermark } from '../replica/applied-watermark.js';
import type { ChangeFeed } from '../replica/change-feed.js';
import type { KeyValueReader } from '../store/store.js';
import type { WriteCondition } from './requests.js';

/** One mutation of a conditional write: a put, or a delete when `value` is null. */
export interface ConditionalMutation {
  readonly key: Buffer;
  readonly value: Buffer | null;
  /** Null: no condition on this key (it is written if the others' hold). */
  readonly condition: WriteCondition | null;
}

/** How a conditional write ended. */
export interface ConditionalVerdict {
  readonly applied: boolean;
  /**
   * Per mutation, in order: applied, the version it gave its key (0 for a delete); not applied, the key's
   * version the conditions were checked against (0: absent).
   */
  readonly versions: readonly number[];
  /**
   * Applied: where the first record landed (the others follow it). Not applied: the position it was decided
   * at, everything before which was applied when the conditions were checked.
   */
  readonly position: LogPosition;
  /** How many records it wrote (0 when not applied). */
  readonly records: number;
}

/** Decides conditional writes: the service's one way to write only if keys are as a caller read them. */
export interface ConditionalWriter {
  writeIf(mutations: readonly ConditionalMutation[], signal: AbortSignal): Promise<ConditionalVerdict>;
}

/** The log as a conditional write needs it. */
export interface TentativeLog {
  partitionOf(key: Buffer): number;
  appendTentative(records: readonly LogWrite[], signal: AbortSignal): Promise<TentativeAppend>;
}

export interface ConditionalWritesOptions {
  readonly log: TentativeLog;
  /** The replica's applied positions, to wait until it has everything before a write. */
  readonly applied: AppliedWatermark;
  /** What the replica applies, to learn whether a write whose commit went unanswered was applied. */
  readonly feed: ChangeFeed;
  /** Reads what the replica has applied (and each key's version). */
  readonly store: KeyValueReader;
}

/**
 * Compare-and-set on the log, validate-then-commit (docs/cas-on-kafka.md): the records are written
 * tentatively and get their offset `o`; no reader passes `o` until they are decided, so once this node's
 * replica has applied everything below `o`, the store holds every key exactly as it is just before them,
 * and nothing can land in between. The conditions are checked there; the records are committed if they
 * hold and aborted if not. Replicas apply committed records like any others and never see aborted ones, so
 * the log holds only final states and every node (and one bootstrapped after compaction) agrees.
 *
 * A commit whose answer is lost is resolved exactly: wait until the replica has passed `o`, and look whether
 * it applied the record at `o`. So a caller hears APPLIED if and only if every node applies the write.
 */
export class ConditionalWrites implements ConditionalWriter {
  readonly #log: TentativeLog;
  readonly #applied: AppliedWatermark;
  readonly #feed: ChangeFeed;
  readonly #store: KeyValueReader;

  constructor(options: ConditionalWritesOptions) {
    this.#log = options.log;
    this.#applied = options.applied;
    this.#feed = options.feed;
    this.#store = options.store;
  }

  async writeIf(mutations: readonly ConditionalMutation[], signal: AbortSignal): Promise<ConditionalVerdict> {
    const partition = this.#sharedPartition(mutations);
    const records = mutations.map(({ key, value }) => ({ key, value }));
    const tentative = await this.#log.appendTentative(records, signal);
    const { offset } = tentative;
    let current: number[];
    try {
      await this.#applied.waitFor(new Map([[partition, offset]]), signal);
      current = mutations.map(({ key }) => this.#versionOf(key));
    } catch (error) {
      await tentative.abort();
      throw error;
    }
    const position = { partition, offset };
    if (!mutations.every(({ condition }, i) => holds(condition, current[i] as number))) {
      await tentative.abort();
      return { applied: false, versions: current, position, records: 0 };
    }
    await this.#commit(tentative, records[0] as LogWrite, signal);
    // Kafka answers a commit before it writes the transaction's markers: until then the records are not
    // readable anywhere, and a CONSISTENCY_LATEST read on any node (which waits for the log's stable end) would
    // not see them. Answer once this node's replica has applied them, as `wait_for_apply` does.
    await this.#applied.waitFor(new Map([[partition, offset + records.length]]), signal);
    return {
      applied: true,
      versions: mutations.map(({ value }, i) => (value === null ? 0 : offset + i + 1)),
      position,
      records: records.length,
    };
  }

  /** The one partition every key goes to; a write spanning partitions could not be atomic. */
  #sharedPartition(mutations: readonly ConditionalMutation[]): number {
    const first = mutations[0];
    if (first === undefined) throw new Kvs2Error('INVALID_ARGUMENT', 'a conditional write needs at least one mutation');
    const partition = this.#log.partitionOf(first.key);
    mutations.forEach(({ key }, i) => {
      const other = this.#log.partitionOf(key);
      if (other !== partition) {
        throw new Kvs2Error(
          'INVALID_ARGUMENT',
          `a conditional write's keys must share a partition of the log: mutations[0] goes to partition ${partition}, ` +
            `mutations[${i}] to partition ${other} (on Kafka with --kafka-partitioner hash-tags, keys sharing a {tag} share a partition: README "Conditional writes")`,
        );
      }
    });
    return partition;
  }

  #versionOf(key: Buffer): number {
    const value = this.#store.get(key);
    return value === undefined ? 0 : this.#store.lastVersion;
  }

  /**
   * Commits; when the answer is lost, learns the outcome from the replica: the first record's position is
   * passed once the write is decided either way (Kafka decides every transaction within its timeout), and
   * the replica applied it if and only if it was committed. The subscription begins before the commit is
   * sent, while the replica cannot be past `offset`, so it hears the record if it is ever applied.
   */
  async #commit(tentative: TentativeAppend, first: LogWrite, signal: AbortSignal): Promise<void> {
    const { partition, offset } = tentative;
    let seen = false;
    const subscription = this.#feed.subscribe((change) => {
      if (change.kind !== 'applied') return;
      for (const record of change.records) {
        if (record.partition === partition && record.offset === offset && sameRecord(record, first)) seen = true;
      }
    });
    try {
      try {
        await tentative.commit();
        return;
      } catch (error) {
        if (!isKvs2Error(error) || error.code !== 'LOG_OUTCOME_UNKNOWN') throw error;
      }
      await this.#applied.waitFor(new Map([[partition, offset + 1]]), signal);
      if (signal.aborted) throw abortError(signal, 'conditional write');
      if (!seen) {
        throw new Kvs2Error(
          'LOG_UNAVAILABLE',
          `the conditional write at offset ${offset} of partition ${partition} was not committed (its commit went unanswered and the log discarded it); nothing was written`,
        );
      }
    } finally {
      subscription.unsubscribe();
    }
  }
}

function holds(condition: WriteCondition | null, version: number): boolean {
  if (condition === null) return true;
  switch (condition.kind) {
    case 'version':
      return version === condition.version;
    case 'absent':
      return version === 0;
    case 'present':
      return version !== 0;
  }
}

function sameRecord(record: { key: Buffer | null; value: Buffer | null }, write: LogWrite): boolean {
  if (record.key === null || !record.key.equals(write.key)) return false;
  return write.value === null ? record.value === null : record.value?.equals(write.value) === true;
}
