/**
 * Which Kafka the tests use: the brokers in KAFKA_BROKERS (comma-separated host:port), as printed by
 * `npm run kafka -- up`. Without it, Kafka tests are skipped on a developer's machine, and fail in CI,
 * where a skipped Kafka test would pass for a tested one.
 */

const SKIP_REASON = 'KAFKA_BROKERS not set: start one with npm run kafka -- up';

/** Test or suite options: `{ skip: reason }` when there is no Kafka to test against, outside CI. */
export function needsKafka(): { skip?: string } {
  return configuredBrokers() === undefined && process.env.CI !== 'true' ? { skip: SKIP_REASON } : {};
}

/** The brokers to test against; throws when none are configured (which only happens in CI). */
export function kafkaBrokers(): string[] {
  const brokers = configuredBrokers();
  if (brokers === undefined) throw new Error('KAFKA_BROKERS is not set; CI must run the Kafka tests');
  return brokers;
}

function configuredBrokers(): string[] | undefined {
  const brokers = (process.env.KAFKA_BROKERS ?? '')
    .split(',')
    .map((broker) => broker.trim())
    .filter((broker) => broker !== '');
  return brokers.length > 0 ? brokers : undefined;
}
