import { randomUUID } from 'node:crypto';
import { STORE_MAX_KEY_BYTES } from '../../config/limits.js';
import type { Logger } from '../../logger.js';
import type { KafkaClientMetrics, KafkaConnectionSecurity } from './kafka-clients.js';

/** The part of a pino logger the Kafka log writes to. */
export type KafkaLogLogger = Pick<Logger, 'info' | 'warn' | 'error'>;

export interface KafkaLogOptions {
  readonly brokers: readonly string[];
  readonly topic: string;
  /** Partitions of the topic if open() creates it (default 12). */
  readonly partitions?: number;
  /** Whether keys with a hash tag (`{tag}`) are partitioned by their tag alone (default false: whole keys). */
  readonly hashTags?: boolean;
  /** Replication factor if open() creates the topic (default min(3, brokers in the cluster)). */
  readonly replicationFactor?: number;
  /** Names this node's connections in broker logs and quotas (default "kvs2"). */
  readonly clientId?: string;
  /** Largest key kvs2 accepts (default 1978, what the store takes): sizes the topic's max.message.bytes. */
  readonly maxKeyBytes?: number;
  /** Largest value kvs2 accepts (default 1 MiB); the topic's max.message.bytes is sized to fit it. */
  readonly maxValueBytes?: number;
  /**
   * How long an append to an idle partition waits for others to share its produce request (default 0:
   * until the end of the event-loop turn; appends arriving while a send is in flight always wait for it).
   */
  readonly lingerMs?: number;
  /** How long an idle fetch waits at the broker: the read latency when idle (default 250 ms). */
  readonly fetchMaxWaitMs?: number;
  /**
   * While records flow, how long a fetch may wait at the broker for more to gather (default 5 ms; 0: never
   * wait). Each fetch round costs the broker and the node CPU and a store commit: under a steady stream of
   * writes, fewer larger fetches use far less of both, for at most this much more replication delay. An idle
   * reader still long-polls and gets the first record at once.
   */
  readonly fetchFlowingWaitMs?: number;
  /** How often readers look for new partitions and leaders without being told (default 30 s). */
  readonly metadataRefreshMs?: number;
  readonly logger?: KafkaLogLogger;
  /** Where the Kafka clients report their own metrics (default: nowhere). */
  readonly metrics?: KafkaClientMetrics;
  /** TLS and SASL to the brokers (default: plaintext, no authentication). */
  readonly security?: KafkaConnectionSecurity;
  /**
   * Names this node's transactional producers, which make conditional writes: `<prefix>-0` up to
   * `<prefix>-<pool size - 1>`. It must be stable across restarts and belong to this node alone: open() then
   * takes every id over, which aborts at once whatever a previous run left open (another node with the same
   * prefix would be fenced off the same way). Default: `<clientId>-<random>`, fresh for each KafkaLog, so that
   * logs opened without a node identity (the replica library, tests) never fence anyone; what a crashed run
   * left open is then aborted only by the transaction timeout.
   */
  readonly transactionalIdPrefix?: string;
  /** Conditional writes undecided at once (default 4); more wait for one to end. */
  readonly transactionalPoolSize?: number;
}

/** Options with every default filled in. */
export interface KafkaLogSettings {
  readonly brokers: readonly string[];
  readonly topic: string;
  readonly partitions: number;
  readonly hashTags: boolean;
  readonly replicationFactor: number | undefined;
  readonly clientId: string;
  readonly maxKeyBytes: number;
  readonly maxValueBytes: number;
  readonly lingerMs: number;
  readonly fetchMaxWaitMs: number;
  readonly fetchFlowingWaitMs: number;
  readonly metadataRefreshMs: number;
  readonly logger: KafkaLogLogger | undefined;
  readonly metrics: KafkaClientMetrics | undefined;
  readonly security: KafkaConnectionSecurity | undefined;
  readonly transactionalIdPrefix: string;
  /** Whether the prefix was given, so that open() takes its ids over from a previous run. */
  readonly fenceAtOpen: boolean;
  readonly transactionalPoolSize: number;
}

/**
 * Fills in the defaults. The values come from kvs2's own config, which has checked them, or from tests:
 * nothing here is input from outside, so nothing is checked again.
 */
export function resolveKafkaLogOptions(options: KafkaLogOptions): KafkaLogSettings {
  const clientId = options.clientId ?? 'kvs2';
  return Object.freeze({
    brokers: [...options.brokers],
    topic: options.topic,
    partitions: options.partitions ?? 12,
    hashTags: options.hashTags ?? false,
    replicationFactor: options.replicationFactor,
    clientId,
    maxKeyBytes: options.maxKeyBytes ?? STORE_MAX_KEY_BYTES,
    maxValueBytes: options.maxValueBytes ?? 1024 * 1024,
    lingerMs: options.lingerMs ?? 0,
    fetchMaxWaitMs: options.fetchMaxWaitMs ?? 250,
    fetchFlowingWaitMs: options.fetchFlowingWaitMs ?? 5,
    metadataRefreshMs: options.metadataRefreshMs ?? 30_000,
    logger: options.logger,
    metrics: options.metrics,
    security: options.security,
    transactionalIdPrefix: options.transactionalIdPrefix ?? `${clientId}-${randomUUID().slice(0, 8)}`,
    fenceAtOpen: options.transactionalIdPrefix !== undefined,
    transactionalPoolSize: options.transactionalPoolSize ?? 4,
  });
}
