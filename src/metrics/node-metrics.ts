import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { KafkaClientMetrics } from '../log/kafka/kafka-clients.js';
import type { Log } from '../log/log.js';
import type { ReplicaProgressView } from '../replica/replica-progress.js';
import type { ConditionalWriter } from '../service/conditional-writes.js';
import type { NodeHealthView } from '../service/node-health.js';
import { fillRatio, type PageFill } from '../store/page-fill.js';
import type { StoreStats } from '../store/store.js';
import { GrpcServerMetrics } from './grpc-server-metrics.js';
import { MeteredConditionalWriter } from './metered-conditional-writer.js';
import { MeteredLog } from './metered-log.js';
import { registerReplicaGauges } from './replica-gauges.js';

/** What the node's gauges read when scraped; nothing here is read on the request path. */
export interface NodeMetricsSources {
  readonly health: NodeHealthView;
  readonly progress: ReplicaProgressView;
  readonly store: { stats(): StoreStats; pageFill(): PageFill };
  /** Watches open now. */
  readonly openWatches: () => number;
}

/**
 * Every metric of one node, in a registry of its own (not prom-client's global one, so that tests run
 * several nodes in one process). Counters on the call path are plain numbers bumped in place; gauges are
 * computed from their sources when scraped.
 *
 * Built before the log and the API (which report into it) and given the sources of its gauges once the
 * node's parts exist (`observe`).
 */
/** kvs2.Kvs2 calls refused by --auth-file, in a node's registry or a serving worker's (summed when scraped). */
export function authFailuresCounter(registry: Registry): Counter<'reason'> {
  return new Counter({
    name: 'kvs2_auth_failures_total',
    help: 'kvs2.Kvs2 calls refused by --auth-file, by reason (no_token, bad_token, permission_denied, verification_overloaded).',
    labelNames: ['reason'],
    registers: [registry],
  });
}

export class NodeMetrics {
  readonly registry = new Registry();
  /** The gRPC call observer, for the API. */
  readonly calls: GrpcServerMetrics;

  constructor(version: string) {
    // Process and runtime metrics (CPU, memory, heap, GC, handles, event-loop lag) as prom-client defines them.
    collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: 'kvs2_build_info',
      help: 'Always 1; the labels say which kvs2 this node runs.',
      labelNames: ['version'],
      registers: [this.registry],
    }).set({ version }, 1);
    this.calls = new GrpcServerMetrics(this.registry);
    this.#authFailures = authFailuresCounter(this.registry);
  }

  readonly #authFailures: Counter<'reason'>;

  /** Counts a call refused by --auth-file. */
  authFailed(reason: string): void {
    this.#authFailures.inc({ reason });
  }

  /** The log, counting and timing its appends. */
  meterLog(log: Log): Log {
    return new MeteredLog(log, this.registry);
  }

  /** The node's decider of conditional writes, counting them by outcome and timing them. */
  meterConditionalWrites(writer: ConditionalWriter): ConditionalWriter {
    return new MeteredConditionalWriter(writer, this.registry);
  }

  /**
   * What @platformatic/kafka's `metrics` option takes: the registry, and the prom-client classes the clients
   * make their metrics with (kafka_producers, kafka_consumers, kafka_produced_messages, ...).
   */
  get kafkaClientMetrics(): KafkaClientMetrics {
    return { registry: this.registry, client: { Counter, Gauge, Histogram, Registry } };
  }

  /** Registers the gauges computed from the node's state at each scrape. */
  observe(sources: NodeMetricsSources): void {
    const registers = [this.registry];
    new Gauge({
      name: 'kvs2_ready',
      help: '1 when the node is ready to serve (caught up with the log), else 0.',
      registers,
      collect() {
        this.set(sources.health.ready() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'kvs2_store_keys',
      help: 'Keys in the local store.',
      registers,
      collect() {
        this.set(sources.store.stats().keys);
      },
    });
    new Gauge({
      name: 'kvs2_store_size_bytes',
      help: 'Bytes the local store uses on disk.',
      registers,
      collect() {
        this.set(sources.store.stats().bytesOnDisk);
      },
    });
    new Gauge({
      name: 'kvs2_store_leaf_fill_ratio',
      help: "How full the store's leaf pages are against the same keys written in key order (estimated; below 0.85 kvs2 compact gives back disk and memory).",
      registers,
      collect() {
        const fill = sources.store.pageFill();
        this.set(fill.entries === 0 ? 1 : fillRatio(fill));
      },
    });
    new Gauge({
      name: 'kvs2_watches_open',
      help: 'Watch streams open on this node.',
      registers,
      collect() {
        this.set(sources.openWatches());
      },
    });
    registerReplicaGauges(this.registry, sources.progress);
  }
}
