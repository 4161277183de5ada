import type { CasTarget } from './cas-targets.js';
import { percentile } from './stats.js';

/** Read-modify-write increments: `concurrency` workers, closed loop, on `keys` counters. */
export interface CasWorkload {
  readonly concurrency: number;
  /** Counters the workers share: worker i increments counter i mod keys (keys = concurrency: one each). */
  readonly keys: number;
  readonly durationSec: number;
  /** Counters are `<prefix><i>`: a fresh prefix per run, so every counter starts absent at 0. */
  readonly keyPrefix: string;
}

/** What one run of the workload did, and whether the counters add up. */
export interface CasRunResult {
  /** Increments whose conditional write was applied. */
  readonly successes: number;
  /** Conditional writes refused because the counter had moved since the read. */
  readonly conflicts: number;
  /** Calls that failed (a read, or a write of unknown outcome). */
  readonly errors: number;
  readonly firstError?: string;
  /** From the first call to the last reply: calls under way when the time is up finish and count. */
  readonly seconds: number;
  /** Latency of the conditional write alone (applied or conflicting), ms, nearest rank. */
  readonly writeLatencyMs: LatencyMs;
  /** Latency of the read before it (kvs2: it waits for the worker's last write to be applied). */
  readonly readLatencyMs: LatencyMs;
  readonly check: CasCheck;
}

export interface LatencyMs {
  readonly mean: number | null;
  readonly p50: number | null;
  readonly p99: number | null;
  readonly p999: number | null;
}

function latencyOf(sorted: readonly number[]): LatencyMs {
  return {
    mean: sorted.length ? sorted.reduce((a, b) => a + b, 0) / sorted.length : null,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    p999: percentile(sorted, 99.9),
  };
}

/**
 * The lost-update check: read at the end, each counter must equal the increments applied to it. A write that
 * failed (unknown outcome) may or may not have happened, so it widens its counter's allowed range by one.
 */
export interface CasCheck {
  readonly ok: boolean;
  /** The successes, and the sum of the counters as read at the end. */
  readonly expected: number;
  readonly found: number;
  /** Counters that did not add up, at most 5: key, applied increments, unknown outcomes, value found. */
  readonly mismatches: ReadonlyArray<{ key: string; applied: number; unknown: number; found: number }>;
}

export function counterKey(prefix: string, index: number): Buffer {
  return Buffer.from(`${prefix}${String(index).padStart(4, '0')}`);
}

/** Runs the workload, then reads every counter back and checks it (never throws for a mismatch: `check.ok`). */
export async function runCasWorkload(target: CasTarget, workload: CasWorkload): Promise<CasRunResult> {
  if (workload.keys < 1 || workload.concurrency < 1) throw new Error('a workload needs workers and keys');
  const keys = Array.from({ length: workload.keys }, (_, i) => counterKey(workload.keyPrefix, i));
  const applied = new Array<number>(workload.keys).fill(0);
  const unknown = new Array<number>(workload.keys).fill(0);
  const latencies: number[] = [];
  const readLatencies: number[] = [];
  let conflicts = 0;
  let errors = 0;
  let firstError: string | undefined;
  const started = performance.now();
  const deadline = started + workload.durationSec * 1000;

  const worker = async (w: number): Promise<void> => {
    const k = w % workload.keys;
    const key = keys[k] as Buffer;
    while (performance.now() < deadline) {
      let writing = false;
      try {
        const r0 = performance.now();
        const current = await target.read(w, key);
        readLatencies.push(performance.now() - r0);
        writing = true;
        const t0 = performance.now();
        const written = await target.conditionalWrite(w, key, current.counter + 1, current.version);
        latencies.push(performance.now() - t0);
        if (written) applied[k] = (applied[k] ?? 0) + 1;
        else conflicts++;
      } catch (error) {
        errors++;
        firstError ??= error instanceof Error ? error.message : String(error);
        if (writing) unknown[k] = (unknown[k] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: workload.concurrency }, (_, w) => worker(w)));
  const seconds = (performance.now() - started) / 1000;

  const mismatches: Array<{ key: string; applied: number; unknown: number; found: number }> = [];
  let found = 0;
  for (let k = 0; k < keys.length; k++) {
    const key = keys[k] as Buffer;
    const value = await target.finalCounter(key);
    found += value;
    const a = applied[k] ?? 0;
    const u = unknown[k] ?? 0;
    if (value < a || value > a + u) {
      mismatches.push({ key: key.toString(), applied: a, unknown: u, found: value });
    }
  }
  latencies.sort((a, b) => a - b);
  readLatencies.sort((a, b) => a - b);
  const successes = applied.reduce((sum, n) => sum + n, 0);
  return {
    successes,
    conflicts,
    errors,
    ...(firstError === undefined ? {} : { firstError }),
    seconds,
    writeLatencyMs: latencyOf(latencies),
    readLatencyMs: latencyOf(readLatencies),
    check: { ok: mismatches.length === 0, expected: successes, found, mismatches: mismatches.slice(0, 5) },
  };
}
