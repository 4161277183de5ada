import type { KafkaConfig, Limits } from '../../config/config.js';
import type { Logger } from '../../logger.js';
import type { KafkaClientMetrics } from './kafka-clients.js';
import { KafkaLog } from './kafka-log.js';
import { loadKafkaSecurity } from './kafka-security.js';

/**
 * The log on Kafka as configured (brokers, topic, TLS/SASL): what a node and the in-process replica library
 * both read. Reads the security files now, so that an unreadable one fails here, before anything connects.
 * A node passes its transactional id prefix (stable and its own, e.g. `kvs2-<node id>`), so that open()
 * aborts what its previous run left open; without one, the ids are fresh (see KafkaLogOptions).
 */
export function openKafkaLog(
  kafka: KafkaConfig,
  limits: Pick<Limits, 'maxKeyBytes' | 'maxValueBytes'>,
  logger: Logger,
  metrics?: KafkaClientMetrics,
  transactionalIdPrefix?: string,
): KafkaLog {
  const { brokers, topic, partitions, replicationFactor, security, partitioner } = kafka;
  logger.info(
    {
      brokers,
      protocol: security.protocol,
      saslMechanism: security.sasl?.mechanism,
      saslUser: security.sasl?.username,
    },
    `reaching Kafka over ${security.protocol}`,
  );
  return new KafkaLog({
    security: loadKafkaSecurity(security),
    brokers,
    topic,
    partitions,
    hashTags: partitioner === 'hash-tags',
    ...(replicationFactor === null ? {} : { replicationFactor }),
    maxKeyBytes: limits.maxKeyBytes,
    maxValueBytes: limits.maxValueBytes,
    logger,
    ...(metrics === undefined ? {} : { metrics }),
    ...(transactionalIdPrefix === undefined ? {} : { transactionalIdPrefix }),
  });
}
