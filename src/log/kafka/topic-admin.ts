import { type Admin, ConfigResourceTypes } from '@platformatic/kafka';
import { hasBrokerError } from './kafka-errors.js';
import type { KafkaLogLogger } from './kafka-log-options.js';

/** How kvs2 wants its topic when it has to create it. */
export interface TopicRequirements {
  readonly topic: string;
  readonly partitions: number;
  /** Undefined: min(3, brokers in the cluster). */
  readonly replicationFactor: number | undefined;
  /** At least the largest record batch kvs2 may send to one partition. */
  readonly maxMessageBytes: number;
}

/** The topic's effective settings (its own overrides, else the broker's defaults). */
export interface TopicSettings {
  readonly cleanupPolicy: string;
  readonly deleteRetentionMs: number;
  readonly maxMessageBytes: number;
  readonly minInsyncReplicas: number;
}

/**
 * Creates the topic compacted, unless it exists. Two nodes starting at once may both try: the loser's
 * TOPIC_ALREADY_EXISTS is a success. Returns whether this call created it.
 */
export async function createTopicIfMissing(
  admin: Admin,
  wanted: TopicRequirements,
  logger?: KafkaLogLogger,
): Promise<boolean> {
  let replicationFactor = wanted.replicationFactor;
  if (replicationFactor === undefined) {
    const cluster = await admin.metadata({ topics: [] });
    replicationFactor = Math.max(1, Math.min(3, cluster.brokers.size));
  }
  // A record is durable once this many replicas have it; 2 survives losing any one broker, and more
  // would make a single broker outage stop all writes when the replication factor is 3.
  const minInsyncReplicas = Math.min(2, replicationFactor);
  try {
    await admin.createTopics({
      topics: [wanted.topic],
      partitions: wanted.partitions,
      replicas: replicationFactor,
      configs: [
        // Keep the latest record of every key for good: the topic is the store's history.
        { name: 'cleanup.policy', value: 'compact' },
        { name: 'min.insync.replicas', value: String(minInsyncReplicas) },
        { name: 'max.message.bytes', value: String(wanted.maxMessageBytes) },
      ],
    });
  } catch (error) {
    if (hasBrokerError(error, 'TOPIC_ALREADY_EXISTS')) return false;
    throw error;
  }
  logger?.info(
    {
      topic: wanted.topic,
      partitions: wanted.partitions,
      replicationFactor,
      minInsyncReplicas,
      maxMessageBytes: wanted.maxMessageBytes,
    },
    'created compacted Kafka topic',
  );
  return true;
}

const SETTING_NAMES = ['cleanup.policy', 'delete.retention.ms', 'max.message.bytes', 'min.insync.replicas'];

/** Reads the topic's effective settings with DescribeConfigs (values include the broker defaults). */
export async function readTopicSettings(admin: Admin, topic: string): Promise<TopicSettings> {
  const [description] = await admin.describeConfigs({
    resources: [{ resourceType: ConfigResourceTypes.TOPIC, resourceName: topic, configurationKeys: SETTING_NAMES }],
  });
  const values = new Map<string, string | null | undefined>();
  for (const config of description?.configs ?? []) values.set(config.name, config.value);
  const text = (name: string): string => {
    const value = values.get(name);
    if (value === undefined || value === null) throw new Error(`topic ${topic} reports no ${name}`);
    return value;
  };
  const integer = (name: string): number => {
    const value = Number(text(name));
    if (!Number.isSafeInteger(value)) throw new Error(`topic ${topic} has ${name}=${text(name)}, not an integer`);
    return value;
  };
  return {
    cleanupPolicy: text('cleanup.policy'),
    deleteRetentionMs: integer('delete.retention.ms'),
    maxMessageBytes: integer('max.message.bytes'),
    minInsyncReplicas: integer('min.insync.replicas'),
  };
}

/**
 * Whether the topic keeps every key's latest record for good: compaction alone. `compact,delete` also
 * drops whole segments once they pass retention.ms, latest records included.
 */
export function keepsEveryKey(settings: TopicSettings): boolean {
  const policies = settings.cleanupPolicy.split(',').map((policy) => policy.trim());
  return policies.includes('compact') && !policies.includes('delete');
}
