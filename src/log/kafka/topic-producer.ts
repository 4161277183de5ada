import { findErrorBy } from '@platformatic/kafka';
import type { LogPosition } from '../log.js';
import { type OutgoingRecord, type RecordSender, SendFailure } from './append-batcher.js';
import { createProducer, type Kvs2Producer } from './kafka-clients.js';
import { describeKafkaError, isClientClosed } from './kafka-errors.js';
import { offsetToNumber } from './kafka-offsets.js';

/**
 * The producer of one topic: turns a batch of records into one produce request (tried once: the
 * batcher retries, knowing which callers still wait) and the request's answer into each record's
 * position. Owns the Kafka producer.
 */
export class TopicProducer implements RecordSender {
  readonly #topic: string;
  readonly #producer: Kvs2Producer;
  #partitionCount = 0;
  #maxPartitionBytes = 0;

  constructor(target: { readonly clientId: string; readonly brokers: readonly string[] }, topic: string) {
    this.#topic = topic;
    this.#producer = createProducer(target);
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
  }

  leaderOf(partition: number): number {
    return this.#producer.currentMetadata?.topics.get(this.#topic)?.partitions[partition]?.leader ?? -1;
  }

  async send(records: readonly OutgoingRecord[]): Promise<LogPosition[]> {
    const topic = this.#topic;
    let result: Awaited<ReturnType<Kvs2Producer['send']>>;
    try {
      result = await this.#producer.send({
        messages: records.map(({ key, value, partition }) => ({ topic, key, value, partition })),
      });
    } catch (error) {
      // The same test as the library's own retries: every error in the tree may be retried.
      const retryable =
        error instanceof Error && findErrorBy(error, 'canRetry', false) === null && !isClientClosed(error);
      // A leader may have moved or died: refresh where the partitions are before the batcher retries
      // (refreshed in place, so that leaderOf() keeps answering from the old layout meanwhile).
      if (retryable) this.#producer.metadata({ topics: [topic], forceUpdate: true }).catch(() => {});
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
    const known = this.#producer.currentMetadata?.topics.get(topic)?.partitionsCount ?? 0;
    if (known > this.#partitionCount) this.#partitionCount = known;
    return positions;
  }

  close(): Promise<void> {
    return this.#producer.close();
  }
}
