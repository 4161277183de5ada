/** The shapes of measurements and of the results file. */

export interface LoadShape {
  /** Requests in flight (closed loop) or workers that share the rate. */
  readonly concurrency: number;
  /** Fixed request rate (calls/s); absent means closed loop, as fast as replies come. */
  readonly rps?: number;
  readonly durationSec: number;
}

/** What one run of a load generator reports. */
export interface RawResult {
  /** Successful operations. */
  readonly ops: number;
  readonly seconds: number;
  readonly errors: number;
  readonly firstError?: string;
  readonly latencyMs: {
    readonly mean: number | null;
    readonly p50: number | null;
    readonly p99: number | null;
    /** Null when the generator does not report it (redis-benchmark). */
    readonly p999: number | null;
  };
}

/** One repetition of a point, with what the server spent on it. */
export interface Sample extends RawResult {
  readonly opsPerSec: number;
  /** Server CPU seconds (user + system, all its processes) per 1,000 successful operations. */
  readonly serverCpuSecPer1kOps: number | null;
  /** Busy % of each core during the run: shows when the load generator's core was the limit. */
  readonly coreBusyPercent: number[];
  /** The machine's 1-minute load average after the point; it includes the point's own server and load generator. */
  readonly loadAverage1m: number;
}

export interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
}

export type Scenario = 'get' | 'multiget' | 'set' | 'write';

export interface Point {
  readonly scenario: Scenario;
  /** The contender: a system and how it is asked, e.g. `etcd-serializable`. */
  readonly contender: string;
  readonly system: string;
  readonly valueBytes: number;
  /** Keys a call reads or writes (100 for MultiGet). */
  readonly keysPerCall: number;
  readonly mode: 'closed' | 'rate';
  readonly concurrency: number;
  readonly targetRps: number | null;
  readonly generator: string;
  readonly samples: readonly Sample[];
  readonly opsPerSec: Spread | null;
  readonly p50Ms: Spread | null;
  readonly p99Ms: Spread | null;
  readonly p999Ms: Spread | null;
  readonly serverCpuSecPer1kOps: Spread | null;
  readonly errors: number;
}

export interface KafkaProducerPoint {
  readonly records: number;
  readonly recordBytes: number;
  readonly recordsPerSec: Spread | null;
  readonly p50Ms: Spread | null;
  readonly p99Ms: Spread | null;
  readonly p999Ms: Spread | null;
  readonly samples: ReadonlyArray<Record<string, number>>;
}

export interface BootstrapResult {
  readonly records: number;
  readonly kvs2: {
    /** From spawning the node to health SERVING (what a user waits for). */
    readonly servingSec: Spread | null;
    readonly recordsPerSec: Spread | null;
    readonly samples: number[];
    /** From the "listening" log line to SERVING: the catch-up alone, without process start-up. */
    readonly catchUpOnlySec: Spread | null;
  };
  readonly kcat: { readonly seconds: Spread | null; readonly recordsPerSec: Spread | null; readonly samples: number[] };
  readonly ratio: number | null;
  /** A new node started with --bootstrap-from a serving peer; absent in results written before it existed. */
  readonly peer?: PeerBootstrapResult;
}

/** New nodes that load a peer's snapshot (`--bootstrap-from`), then read the topic from its offsets. */
export interface PeerBootstrapResult {
  /** Keys the nodes loaded from the peer (the `bootstrapped from peer` log line). */
  readonly keys: number;
  /** From spawning the node to health SERVING. */
  readonly servingSec: Spread | null;
  /** The topic's records over servingSec, as the topic bootstrap and kcat are reported. */
  readonly recordsPerSec: Spread | null;
  /** From the "listening" log line to SERVING: the peer's snapshot and the topic after it, without process start-up. */
  readonly catchUpOnlySec: Spread | null;
  /** The topic's records over catchUpOnlySec. */
  readonly catchUpOnlyRecordsPerSec: Spread | null;
  /** Keys loaded over servingSec. */
  readonly keysPerSec: Spread | null;
  /** The node's own `tookMs` of the peer load (asking, streaming, installing), in seconds. */
  readonly peerLoadSec: Spread | null;
  readonly samples: number[];
  /** recordsPerSec over kcat's, medians. */
  readonly ratioToKcat: number | null;
}

export interface MemoryResult {
  readonly system: string;
  readonly keys: number;
  readonly valueBytes: number;
  readonly rssBytes: number | null;
  /** Bytes on disk of the data files (kvs2: LMDB data.mdb of the store and the embedded log). */
  readonly diskBytes: number | null;
  readonly details: Record<string, number | string | null>;
  /** RSS per million keys. */
  readonly rssBytesPerMillionKeys: number | null;
  readonly diskBytesPerMillionKeys: number | null;
}

export interface LoadRecord {
  readonly system: string;
  readonly keys: number;
  readonly valueBytes: number;
  readonly seconds: number;
  readonly keysPerSec: number;
}

/**
 * Get on kvs2 and on the no-op server at one concurrency, their repetitions alternated (and which goes
 * first too), so that the host's drift over a run weighs on both alike; the ratio is taken pair by pair.
 */
export interface PairedGetResult {
  readonly concurrency: number;
  readonly valueBytes: number;
  readonly kvs2: Spread | null;
  readonly noop: Spread | null;
  /** kvs2's calls/s over the no-op server's, per pair. */
  readonly ratio: Spread | null;
  readonly pairs: ReadonlyArray<{ readonly kvs2: number; readonly noop: number }>;
}

/** One side of a comparison with a baseline tree: its figures over the alternated repetitions. */
export interface ComparedSide {
  readonly opsPerSec: Spread | null;
  readonly p99Ms: Spread | null;
  readonly serverCpuSecPer1kOps: Spread | null;
  readonly samples: readonly Sample[];
}

/**
 * One closed-loop point run on this tree and on a baseline tree (two nodes on the server core, one idle
 * while the other is measured), repetitions alternated like the paired Get.
 */
export interface BaselineComparison {
  readonly scenario: Scenario;
  readonly log: 'embedded' | 'kafka';
  readonly valueBytes: number;
  readonly concurrency: number;
  readonly current: ComparedSide;
  readonly baseline: ComparedSide;
  /** This tree's calls/s over the baseline's, pair by pair. */
  readonly ratio: Spread | null;
}

export interface BaselineResult {
  /** The baseline checkout and its commit; the current tree's is `machine.gitCommit`. */
  readonly tree: string;
  readonly commit: string;
  /** The baseline is this very build (`--baseline .`), run with other flags. Absent in older results. */
  readonly sameTree?: boolean;
  /** Extra `kvs2 serve` flags of this tree's node and of the baseline's (`--args`, `--baseline-args`). */
  readonly currentArgs?: readonly string[];
  readonly baselineArgs?: readonly string[];
  readonly comparisons: BaselineComparison[];
}

export interface LatencyMs {
  readonly mean: number | null;
  readonly p50: number | null;
  readonly p99: number | null;
  readonly p999: number | null;
}

/** One repetition of a conditional-write point (bench/lib/cas-load.ts). */
export interface CasSample {
  readonly successes: number;
  readonly conflicts: number;
  readonly errors: number;
  readonly firstError?: string;
  readonly seconds: number;
  readonly incrementsPerSec: number;
  readonly conflictsPerSuccess: number | null;
  /** The conditional write alone (applied or conflicting), ms. */
  readonly writeLatencyMs: LatencyMs;
  /** The read before it. */
  readonly readLatencyMs: LatencyMs;
  readonly serverCpuSecPer1kIncrements: number | null;
  /** The same per server process (kvs2 on Kafka: the node, then the broker). */
  readonly serverCpuSecPer1kIncrementsByProcess?: number[];
  readonly coreBusyPercent: number[];
  readonly loadAverage1m: number;
  /** The counters read at the end against the increments applied (README "Conditional writes"). */
  readonly check: { readonly ok: boolean; readonly expected: number; readonly found: number };
}

/**
 * Read-modify-write increments on one system: `concurrency` workers on `keys` counters (one each when
 * `keys` = `concurrency`: uncontended), each a read then a conditional write, retried on conflict.
 */
export interface CasPoint {
  /** kvs2 (embedded log), kvs2-kafka, etcd. */
  readonly system: string;
  readonly contended: boolean;
  readonly concurrency: number;
  readonly keys: number;
  /** How each side reads and writes (its read's consistency, its conditional call). */
  readonly read: string;
  readonly write: string;
  readonly connections: number;
  readonly samples: readonly CasSample[];
  readonly incrementsPerSec: Spread | null;
  readonly conflictsPerSuccess: Spread | null;
  readonly p50Ms: Spread | null;
  readonly p99Ms: Spread | null;
  readonly p999Ms: Spread | null;
  /** The read's p50 and p99. */
  readonly readP50Ms: Spread | null;
  readonly readP99Ms: Spread | null;
  readonly serverCpuSecPer1kIncrements: Spread | null;
  readonly errors: number;
  /** Every repetition's counters added up. */
  readonly checked: boolean;
}

/** A scenario the suite ran as a script of its own (bench/<script>.ts), with that script's report. */
export interface StandaloneResult {
  readonly scenario: string;
  /** The command line, from the suite's copy of the tree. */
  readonly command: string;
  readonly seconds: number;
  /** The script's JSON report as it wrote it. */
  readonly report: unknown;
  /** The script's Markdown report, shown in the suite's. */
  readonly markdown: string;
}

export interface Results {
  readonly suite: 'kvs2-bench';
  readonly version: 1;
  readonly startedAt: string;
  finishedAt: string;
  wallSeconds: number;
  readonly options: Record<string, unknown>;
  readonly machine: Record<string, unknown>;
  readonly tools: Record<string, string>;
  readonly systems: Record<string, { durability: string; notes?: string }>;
  readonly points: Point[];
  readonly loads: LoadRecord[];
  readonly memory: MemoryResult[];
  kafkaProducer: KafkaProducerPoint | null;
  bootstrap: BootstrapResult | null;
  /** Absent in results written before the paired Get existed. */
  readonly pairedGet?: PairedGetResult[];
  /** Conditional-write points (scenario cas); absent in results written before it existed. */
  cas?: CasPoint[];
  /** Scenarios measured by a script of their own (in-process, serve-workers); absent before they joined. */
  standalone?: StandaloneResult[];
  /** Only in runs with --baseline, which measure nothing else. */
  baseline?: BaselineResult;
  /** Peers or scenarios that could not run, and why. */
  readonly skipped: Array<{ what: string; why: string }>;
  readonly notes: string[];
  profile: {
    readonly file: string;
    readonly topSelf: ReadonlyArray<{ fn: string; selfPercent: number }>;
    readonly byComponent: ReadonlyArray<{ component: string; selfPercent: number }>;
  } | null;
}
