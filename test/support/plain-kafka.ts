import { randomUUID } from 'node:crypto';
import { Admin, Consumer, compatibilityPartitioner, Producer } from '@platformatic/kafka';

/**
 * Kafka as any other application sees it, through a plain client and not through kvs2: to write records
 * kvs2 must serve, and to look at what the topic really holds.
 */
export class PlainKafka {
  readonly #brokers: string[];
  readonly #producer: Producer;
  readonly #admin: Admin;

  constructor(brokers: string) {
    this.#brokers = brokers.split(',');
    this.#producer = new Producer({
      clientId: 'kvs2-test-plain-producer',
      bootstrapBrokers: this.#brokers,
      // The partitioner Java clients use (murmur2 of the key, masked positive): records of a key land in
      // the partition any standard producer would choose.
      partitioner: compatibilityPartitioner,
    });
    this.#admin = new Admin({ clientId: 'kvs2-test-admin', bootstrapBrokers: this.#brokers });
  }

  /**
   * Produces records; a null value is a tombstone, a null key a record without key, a `partition` puts the
   * record there instead of where the key's murmur2 would.
   */
  async produce(
    topic: string,
    records: Array<{ key: Buffer | null; value: Buffer | null; partition?: number }>,
  ): Promise<void> {
    await this.#producer.send({
      messages: records.map(({ key, value, partition }) => ({
        topic,
        ...(key === null ? {} : { key }),
        ...(value === null ? {} : { value }),
        ...(partition === undefined ? {} : { partition }),
      })),
    });
  }

  async createTopic(topic: string, partitions: number, configs: Record<string, string> = {}): Promise<void> {
    await this.#admin.createTopics({
      topics: [topic],
      partitions,
      replicas: 1,
      configs: Object.entries(configs).map(([name, value]) => ({ name, value })),
    });
  }

  async deleteTopic(topic: string): Promise<void> {
    await this.#admin.deleteTopics({ topics: [topic] });
  }

  /** Every record the topic holds now, from the start of each partition to its end. */
  async readAll(topic: string): Promise<Array<{ key: Buffer | undefined; value: Buffer | undefined }>> {
    const consumer = new Consumer({
      clientId: 'kvs2-test-reader',
      groupId: `kvs2-test-reader-${randomUUID()}`,
      bootstrapBrokers: this.#brokers,
    });
    try {
      const ends = (await consumer.listOffsets({ topics: [topic] })).get(topic) ?? [];
      const remaining = new Map(ends.map((end, partition) => [partition, end]));
      for (const [partition, end] of remaining) if (end === 0n) remaining.delete(partition);
      const records: Array<{ key: Buffer | undefined; value: Buffer | undefined }> = [];
      if (remaining.size === 0) return records;
      const stream = await consumer.consume({ topics: [topic], mode: 'earliest', autocommit: false, maxWaitTime: 200 });
      for await (const message of stream) {
        records.push({ key: message.key, value: message.value });
        const end = remaining.get(message.partition);
        if (end !== undefined && message.offset + 1n >= end) remaining.delete(message.partition);
        if (remaining.size === 0) break;
      }
      await stream.close();
      return records;
    } finally {
      await consumer.close(true);
    }
  }

  async close(): Promise<void> {
    await this.#producer.close();
    await this.#admin.close();
  }
}
