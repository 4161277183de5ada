import { Gauge, type Registry } from 'prom-client';
import type { ReplicaProgressView } from '../replica/replica-progress.js';

/**
 * How far the replica is, read from its progress view at each scrape. A partition whose log end is not
 * known yet has an applied offset but no end offset and no lag series: absent, rather than a made-up 0.
 */
export function registerReplicaGauges(registry: Registry, progress: ReplicaProgressView): void {
  const registers = [registry];
  const labelNames = ['partition'] as const;
  new Gauge({
    name: 'kvs2_replica_applied_offset',
    help: 'Next log offset the replica will apply, per partition.',
    labelNames,
    registers,
    collect() {
      this.reset();
      for (const p of progress.partitions()) this.set({ partition: String(p.partition) }, p.appliedOffset);
    },
  });
  new Gauge({
    name: 'kvs2_replica_end_offset',
    help: 'End offset of the log as the replica last learnt it, per partition.',
    labelNames,
    registers,
    collect() {
      this.reset();
      for (const p of progress.partitions()) {
        if (p.endOffset !== null) this.set({ partition: String(p.partition) }, p.endOffset);
      }
    },
  });
  new Gauge({
    name: 'kvs2_replica_lag_records',
    help: 'Records of the log the replica has not applied yet, per partition.',
    labelNames,
    registers,
    collect() {
      this.reset();
      for (const p of progress.partitions()) {
        if (p.lagRecords !== null) this.set({ partition: String(p.partition) }, p.lagRecords);
      }
    },
  });
  new Gauge({
    name: 'kvs2_replica_seconds_since_caught_up',
    help: 'Seconds since the replica was last caught up with the log (NaN before it first was).',
    registers,
    collect() {
      const at = progress.lastCaughtUpAtMs();
      this.set(at === null ? Number.NaN : Math.max(0, Date.now() - at) / 1000);
    },
  });
  new Gauge({
    name: 'kvs2_replica_bootstrap_ratio',
    help: 'Share of the first catch-up with the log done, from 0 to 1 (1 once caught up once).',
    registers,
    collect() {
      this.set(progress.bootstrapRatio());
    },
  });
}
