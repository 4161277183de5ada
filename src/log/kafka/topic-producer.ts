import { findErrorBy } from '@platformatic/kafka';
import type { LogPosition } from '../log.js';
import { type OutgoingRecord, type RecordSender, SendFailure } from './append-batcher.js';
import { type ClientTarget, createProducer, type Kvs2Producer } from './kafka-clients.js';
import { describeKafkaError, isClientClosed, isUnknownTopic } from './kafka-errors.js';
import { offsetToNumber } from './kafka-offsets.js';

/**
 * The producers of one topic: turns a batch of records into one produce request (tried once: the batcher
 * retries, knowing which callers still wait) and the request's answer into each record's position. Owns
 * the Kafka producers.
 *
 * One idempotent producer per leader the batcher sends to, never one shared by concurrent sends: the
 * client resets its producer id and sequence numbers when a send fails, and a concurrent send that had
 * already taken the old producer id but not yet its sequence numbers would then go out with the old id
 * and restarted sequence numbers. The broker takes such a batch for a duplicate of the first one it saw
 * from that id and acknowledges it at that batch's offsets without writing it: an acknowledged write lost
 * (found by the fault checker). With one send in flight per producer, a reset never meets another send.
 */
export class TopicProducer implements RecordSender {
  readonly #topic: string;
  readonly #target: ClientTarget;
  /** Answers leaderOf() and is refreshed when a send fails; sends go through the lanes. */
  readonly #metadata: Kvs2Producer;
  /** By the leader the batcher sends to (-1: unknown). */
  readonly #lanes = new Map<number, Kvs2Producer>();
  #partitionCount = 0;
  #maxPartitionBytes = 0;

  constructor(target: ClientTarget, topic: string) {
    this.#topic = topic;
    this.#target = target;
    this.#metadata = createProducer(target);
  }

  /** Partitions keys are spread over: the count at open, or more once the topic has grown. */
  get partitionCount(): number {
    return this.#partitionCount;
  }

  get maxPartitionBytes(): number {
    return this.#maxPartitionBytes;
  }

  /** Takes the layout and max.message.bytes of the topic as it was (re)opened. */
  adopt(partitionCount: number, maxMessageBytes: number): void {
    this.#partitionCount = partitionCount;
    this.#maxPartitionBytes = maxMessageBytes;
    // So that the first sends already go one per leader.
    this.#metadata.metadata({ topics: [this.#topic] }).catch(() => {});
  }

  leaderOf(partition: number): number {
    return this.#metadata.currentMetadata?.topics.get(this.#topic)?.partitions[partition]?.leader ?? -1;
  }

  async send(records: readonly OutgoingRecord[], leader: number): Promise<LogPosition[]> {
    const topic = this.#topic;
    let lane = this.#lanes.get(leader);
    if (lane === undefined) {
      lane = createProducer(this.#target);
      this.#lanes.set(leader, lane);
    }
    // Cached for a second: at most one metadata request a second keeps leaderOf() current.
    this.#metadata.metadata({ topics: [topic] }).catch(() => {});
    let result: Awaited<ReturnType<Kvs2Producer['send']>>;
    try {
      result = await lane.send({
        messages: records.map(({ key, value, partition }) => ({ topic, key, value, partition })),
      });
    } catch (error) {
      // The same test as the library's own retries: every error in the tree may be retried.
      const retryable =
        error instanceof Error &&
        (isUnknownTopic(error) || (findErrorBy(error, 'canRetry', false) === null && !isClientClosed(error)));
      // A leader may have moved or died: refresh where the partitions are before the batcher retries
      // (refreshed in place, so that leaderOf() keeps answering from the old layout meanwhile).
      if (retryable) this.#metadata.metadata({ topics: [topic], forceUpdate: true }).catch(() => {});
      throw new SendFailure(describeKafkaError(error), retryable, { cause: error });
    }
    const baseOffsets = new Map<number, bigint>();
    for (const { topic: name, partition, offset } of result.offsets ?? []) {
      if (name === topic) baseOffsets.set(partition, offset);
    }
    // A produce request holds one batch per partition, in the order given: the n-th record of a
    // partition lands at the batch's base offset + n.
    const taken = new Map<number, number>();
    const positions = records.map(({ partition }) => {
      const base = baseOffsets.get(partition);
      if (base === undefined) throw new SendFailure(`no offset acknowledged for partition ${partition}`, false);
      const index = taken.get(partition) ?? 0;
      taken.set(partition, index + 1);
      return { partition, offset: offsetToNumber(base + BigInt(index), `partition ${partition}`) };
    });
    // Partitions added to the topic take keys from now on, as with Java producers.
    const known = lane.currentMetadata?.topics.get(topic)?.partitionsCount ?? 0;
    if (known > this.#partitionCount) this.#partitionCount = known;
    return positions;
  }

  async close(): Promise<void> {
    const producers = [this.#metadata, ...this.#lanes.values()];
    this.#lanes.clear();
    const closed = await Promise.allSettled(producers.map((producer) => producer.close()));
    const failure = closed.find((outcome) => outcome.status === 'rejected');
    if (failure !== undefined) throw failure.reason;
  }
}
