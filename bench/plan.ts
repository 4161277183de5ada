/** What a run measures: data sizes, points and timings, for a full run and for `--quick`. */

export const SCENARIOS = [
  'get',
  'multiget',
  'set',
  'bootstrap',
  'memory',
  'cas',
  'in-process',
  'serve-workers',
] as const;
export type ScenarioName = (typeof SCENARIOS)[number];
/**
 * What a run measures when `--scenario` is not given. Asked for by name: `cas` (conditional writes),
 * `in-process` (the in-process replica and co-located reader, bench/in-process-reads.ts) and `serve-workers`
 * (bench/serve-workers.ts), each several minutes of its own.
 */
export const DEFAULT_SCENARIOS: readonly ScenarioName[] = ['get', 'multiget', 'set', 'bootstrap', 'memory'];

export const PEERS = ['etcd', 'redis', 'noop', 'kafka'] as const;
export type PeerName = (typeof PEERS)[number];

export interface Plan {
  readonly quick: boolean;
  readonly keys: number;
  readonly valueBytes: number;
  /** The large-value variant (0: none) and its key count. */
  readonly largeValueBytes: number;
  readonly largeKeys: number;
  readonly durationSec: number;
  readonly warmUpSec: number;
  readonly repetitions: number;
  readonly getConcurrency: readonly number[];
  /** Concurrencies at which kvs2's Get and the no-op server's alternate, repetition by repetition. */
  readonly pairedGetConcurrency: readonly number[];
  /** Fixed Get rates as fractions of kvs2's best closed-loop Get rate in this run. */
  readonly getRateFractions: readonly number[];
  /** Workers that share a fixed rate (ghz --concurrency with --rps). */
  readonly rateWorkers: number;
  readonly multiGetKeys: number;
  readonly multiGetConcurrency: readonly number[];
  /** Fixed MultiGet rates in calls/s; fractions of kvs2's best MultiGet rate are added to them. */
  readonly multiGetRates: readonly number[];
  readonly multiGetRateFractions: readonly number[];
  readonly setConcurrency: readonly number[];
  /** Mutations per `Write` call (batched writes), and the concurrencies they run at. */
  readonly writeMutations: number;
  readonly writeConcurrency: readonly number[];
  /** Concurrency of the large-value points. */
  readonly largeConcurrency: number;
  readonly kafkaProducerRecords: number;
  /** Conditional writes: workers (each point runs at every one), and the shared counters of the contended points. */
  readonly casConcurrency: readonly number[];
  readonly casSharedKeys: readonly number[];
}

export interface PlanOverrides {
  readonly keys?: number;
  readonly durationSec?: number;
  readonly repetitions?: number;
  readonly largeValueBytes?: number;
  /** Closed-loop concurrencies of every call, instead of each scenario's own list. */
  readonly inFlight?: readonly number[];
}

export function makePlan(quick: boolean, overrides: PlanOverrides): Plan {
  const keys = overrides.keys ?? (quick ? 10_000 : 1_000_000);
  const inFlight = (defaults: readonly number[]) => overrides.inFlight ?? defaults;
  return {
    quick,
    keys,
    valueBytes: 100,
    largeValueBytes: overrides.largeValueBytes ?? (quick ? 0 : 1024),
    // A tenth of the keys: the same 1 GiB of values would cost minutes of loading per system.
    largeKeys: Math.max(1_000, Math.floor(keys / 10)),
    durationSec: overrides.durationSec ?? (quick ? 2 : 5),
    warmUpSec: quick ? 1 : 2,
    repetitions: overrides.repetitions ?? (quick ? 1 : 3),
    getConcurrency: inFlight(quick ? [64] : [1, 8, 64, 256]),
    pairedGetConcurrency: inFlight(quick ? [64] : [64, 256]),
    getRateFractions: quick ? [0.5] : [0.25, 0.5, 0.75],
    rateWorkers: 64,
    multiGetKeys: 100,
    multiGetConcurrency: inFlight(quick ? [16] : [1, 16, 64]),
    multiGetRates: quick ? [] : [1_000],
    multiGetRateFractions: quick ? [] : [0.5],
    setConcurrency: inFlight(quick ? [64] : [1, 4, 16, 64, 256]),
    writeMutations: 100,
    writeConcurrency: inFlight(quick ? [4] : [1, 4, 16]),
    largeConcurrency: 64,
    kafkaProducerRecords: quick ? 100_000 : 1_000_000,
    casConcurrency: inFlight(quick ? [16] : [16, 64]),
    casSharedKeys: quick ? [1] : [1, 8],
  };
}
