import { type Base, type Broker, metadataV12, parseBroker } from '@platformatic/kafka';

type MetadataResponse = metadataV12.MetadataResponse;

/** Where one partition is served from now. */
export interface PartitionLeader {
  readonly partition: number;
  /** Broker node id, or -1 while no leader is elected. */
  readonly leader: number;
  readonly leaderEpoch: number;
}

/** What the cluster says about our topic at one moment. */
export interface TopicLayout {
  /** The topic's UUID: it changes when the topic is deleted and created again. */
  readonly topicId: string;
  /** Indexed by partition number. */
  readonly partitions: readonly PartitionLeader[];
  readonly brokers: ReadonlyMap<number, Broker>;
}

const UNKNOWN_TOPIC_OR_PARTITION = 3;
const NULL_TOPIC_ID = '00000000-0000-0000-0000-000000000000';

/**
 * Fresh metadata for one topic, from the first of `candidates` that answers (never from the client's
 * cache), or null when the
 * topic does not exist. Sent as Metadata v12, which every broker the library supports (Kafka 3.5 to
 * 4.2) serves and which carries topic ids, with allow_auto_topic_creation off: looking at a deleted
 * topic must never create it again.
 *
 * We send the request ourselves because the client's `metadata()` hides what we need: it turns "no such
 * topic" into a generic user error after retrying it, and fails the whole call when one partition has
 * no leader, where we want the other partitions' leaders.
 */
export async function fetchTopicLayout(
  client: Base,
  candidates: readonly Broker[],
  topic: string,
): Promise<TopicLayout | null> {
  const connection = await client.connections.getFirstAvailable([...candidates]);
  let response: MetadataResponse;
  try {
    response = await metadataV12.api.async(connection, [topic], false, false);
  } catch (error) {
    // Per-topic and per-partition errors come as a ResponseError that still holds the whole response.
    const partial: unknown = error instanceof Error ? Reflect.get(error, 'response') : undefined;
    if (!isMetadataResponse(partial)) throw error;
    response = partial;
  }
  const found = response.topics.find((candidate) => candidate.name === topic);
  if (found === undefined || found.errorCode === UNKNOWN_TOPIC_OR_PARTITION || found.topicId === NULL_TOPIC_ID) {
    return null;
  }
  if (found.errorCode !== 0) {
    throw new Error(`metadata for topic ${topic} answered error code ${found.errorCode}`);
  }
  const partitions: PartitionLeader[] = [];
  for (const partition of found.partitions) {
    partitions[partition.partitionIndex] = {
      partition: partition.partitionIndex,
      leader: partition.errorCode === 0 ? partition.leaderId : -1,
      leaderEpoch: partition.leaderEpoch,
    };
  }
  const brokers = new Map<number, Broker>();
  for (const broker of response.brokers) brokers.set(broker.nodeId, { host: broker.host, port: broker.port });
  return { topicId: found.topicId, partitions: Array.from(partitions, (p, i) => p ?? noLeader(i)), brokers };
}

/** The brokers option ("host:port" strings) in the library's form. */
export function parseBrokers(brokers: readonly string[]): Broker[] {
  return brokers.map((broker) => parseBroker(broker));
}

/**
 * Brokers to ask for metadata: those the cluster last reported, then the configured ones (which may
 * all be down while others serve), without repeats.
 */
export function metadataCandidates(layout: TopicLayout | undefined, bootstrap: readonly Broker[]): Broker[] {
  const seen = new Set<string>();
  const candidates: Broker[] = [];
  for (const broker of [...(layout?.brokers.values() ?? []), ...bootstrap]) {
    const key = `${broker.host}:${broker.port}`;
    if (seen.has(key)) continue;
    seen.add(key);
    candidates.push(broker);
  }
  return candidates;
}

function noLeader(partition: number): PartitionLeader {
  return { partition, leader: -1, leaderEpoch: -1 };
}

function isMetadataResponse(value: unknown): value is MetadataResponse {
  return typeof value === 'object' && value !== null && Array.isArray(Reflect.get(value, 'topics'));
}
