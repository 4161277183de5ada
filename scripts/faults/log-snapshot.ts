import { randomUUID } from 'node:crypto';
import { Consumer } from '@platformatic/kafka';

/** One record of the topic, read straight from Kafka: the ground truth the nodes must match. */
export interface LogRecord {
  readonly partition: number;
  readonly offset: number;
  readonly key: string;
  /** null for a tombstone (a delete). */
  readonly value: string | null;
}

export interface LogSnapshot {
  /** The end offset of every partition when the snapshot was read. */
  readonly ends: readonly number[];
  readonly records: readonly LogRecord[];
}

const READ_TIMEOUT_MS = 120_000;

/** The end offset of every partition of the topic now. */
export async function logEnds(brokers: string, topic: string): Promise<number[]> {
  const consumer = new Consumer({
    clientId: 'kvs2-faults-ends',
    groupId: `kvs2-faults-${randomUUID()}`,
    bootstrapBrokers: brokers.split(','),
  });
  try {
    return ((await consumer.listOffsets({ topics: [topic] })).get(topic) ?? []).map(Number);
  } finally {
    await consumer.close(true);
  }
}

/**
 * Every record of the topic from the start of each partition to its end, through a plain Kafka client and
 * not through kvs2, so a node's own reading of the log is checked against it.
 */
export async function readLog(brokers: string, topic: string): Promise<LogSnapshot> {
  const consumer = new Consumer({
    clientId: 'kvs2-faults-reader',
    groupId: `kvs2-faults-${randomUUID()}`,
    bootstrapBrokers: brokers.split(','),
  });
  try {
    const ends = ((await consumer.listOffsets({ topics: [topic] })).get(topic) ?? []).map(Number);
    const remaining = new Map(ends.map((end, partition) => [partition, end]));
    for (const [partition, end] of remaining) if (end === 0) remaining.delete(partition);
    const records: LogRecord[] = [];
    if (remaining.size === 0) return { ends, records };
    const stream = await consumer.consume({ topics: [topic], mode: 'earliest', autocommit: false, maxWaitTime: 200 });
    const timer = setTimeout(() => {
      stream.close().catch(() => {});
    }, READ_TIMEOUT_MS);
    try {
      for await (const message of stream) {
        const offset = Number(message.offset);
        const end = remaining.get(message.partition);
        // Records past the end taken above arrived later: they belong to no snapshot of this one.
        if (end === undefined || offset >= end) continue;
        records.push({
          partition: message.partition,
          offset,
          key: message.key?.toString() ?? '',
          // The checker never writes an empty value, so an empty one can only be a tombstone.
          value: message.value == null || message.value.length === 0 ? null : message.value.toString(),
        });
        if (offset + 1 >= end) remaining.delete(message.partition);
        if (remaining.size === 0) break;
      }
    } finally {
      clearTimeout(timer);
      await stream.close().catch(() => {});
    }
    if (remaining.size > 0) {
      throw new Error(`the topic could not be read to its end within ${READ_TIMEOUT_MS} ms: ${[...remaining.keys()]}`);
    }
    return { ends, records };
  } finally {
    await consumer.close(true);
  }
}
