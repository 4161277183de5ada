import type { KafkaClientMetrics } from './kafka-clients.js';

/** How a conditional write's transaction ended, as its writer knows it. */
export type TransactionOutcome = 'committed' | 'aborted' | 'unknown';

/** The part of a prom-client Counter used here. */
interface OutcomeCounter {
  labels(labels: { outcome: TransactionOutcome }): { inc(): void };
}

const NAME = 'kvs2_kafka_transactions';

/**
 * Counts transactions by outcome beside the Kafka clients' own metrics (same registry), or nowhere when the
 * node keeps no metrics. Named kvs2_* since the library owns the kafka_* names. Several KafkaLogs sharing a
 * registry (tests) share the counter.
 */
export function transactionOutcomeCounter(
  metrics: KafkaClientMetrics | undefined,
): (outcome: TransactionOutcome) => void {
  if (metrics === undefined) return () => {};
  const { registry, client } = metrics;
  const counter = (registry.getSingleMetric(NAME) ??
    new client.Counter({
      name: NAME,
      help: 'Transactions of conditional writes on Kafka, by outcome: committed, aborted, or unknown (a commit whose answer was lost or refused; the writer resolves it by reading the log).',
      registers: [registry],
      labelNames: ['outcome'],
    })) as OutcomeCounter;
  return (outcome) => counter.labels({ outcome }).inc();
}
