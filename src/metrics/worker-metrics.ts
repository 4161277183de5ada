import { type Counter, Gauge, Registry } from 'prom-client';
import { GrpcServerMetrics } from './grpc-server-metrics.js';
import { authFailuresCounter } from './node-metrics.js';

/**
 * The metrics a serving worker keeps of its own calls, in a registry of its own: the node adds them to its
 * registry's when scraped (prom-client's AggregatorRegistry sums series of one name), so that /metrics
 * shows one node whatever the number of workers.
 */
export class ServingWorkerMetrics {
  readonly registry = new Registry();
  readonly calls: GrpcServerMetrics;
  readonly #authFailures: Counter<'reason'>;

  constructor() {
    this.calls = new GrpcServerMetrics(this.registry);
    this.#authFailures = authFailuresCounter(this.registry);
  }

  /** Where the worker's open watches are counted (kvs2_watches_open, summed over the node's workers). */
  observeWatches(openWatches: () => number): void {
    new Gauge({
      name: 'kvs2_watches_open',
      help: 'Watch streams open on this node.',
      registers: [this.registry],
      collect() {
        this.set(openWatches());
      },
    });
  }

  authFailed(reason: string): void {
    this.#authFailures.inc({ reason });
  }
}
