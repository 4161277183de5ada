/**
 * The settings `kvs2 serve` runs its Node.js with, which Node and glibc read only when a process starts:
 * bin/kvs2.js starts the process again at once (execve: same pid, files and arguments) with whatever of
 * them is missing. An operator's own value of any of them wins: it is left as it is.
 *
 * - `MALLOC_MMAP_THRESHOLD_=8192` (glibc only): without it glibc's main arena keeps the memory a burst of
 *   reads freed, tens of MiB resident for good on an idle node.
 * - `--max-semi-space-size=2` (V8's young generation, MiB per semi-space; V8's own default grows to 16 or 32):
 *   grpc-js and node:http2 allocate ~21 KB per call and a fifth of it outlives the next scavenge, so a young
 *   generation of V8's size is a 5–50 ms scavenge that stalls every call on the thread; a small one is a
 *   0.3–1 ms scavenge each few milliseconds, for the same throughput.
 * - `--single-threaded-gc` on 1 or 2 cores: V8's parallel scavenge and concurrent marking threads need an
 *   idle core; on a node with two or fewer they take turns with the serving thread at the scheduler's
 *   granularity, inside the pauses. On more cores V8 decides, as usual.
 * Measured (Get and MultiGet p99 at fixed rates, best Get calls/s): docs/benchmarks.md, "The young generation".
 */

/** Semi-space size in MiB: the young generation is two of them. */
export const SERVING_SEMI_SPACE_MIB = 2;

/** Up to this many cores, the collector works on the serving thread alone. */
export const SINGLE_THREADED_GC_MAX_CORES = 2;

export const MALLOC_MMAP_THRESHOLD = '8192';

export interface RuntimeFacts {
  /** The process's environment. */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Node flags it was started with (process.execArgv). */
  readonly execArgv: readonly string[];
  /** Cores this process may run on (os.availableParallelism(): its CPU affinity). */
  readonly cores: number;
  /** Whether the C library is glibc (whose malloc reads MALLOC_MMAP_THRESHOLD_). */
  readonly glibc: boolean;
}

export interface RuntimeChanges {
  /** Environment variables to add. */
  readonly env: Readonly<Record<string, string>>;
  /** Node flags to add before the process's own. */
  readonly nodeFlags: readonly string[];
}

/** Node flags a serving process should run with on `cores` cores, leaving out any the operator chose. */
export function servingNodeFlags(facts: Pick<RuntimeFacts, 'env' | 'execArgv' | 'cores'>): string[] {
  const chosen = [...facts.execArgv, ...(facts.env.NODE_OPTIONS ?? '').split(/\s+/)];
  const mentions = (name: string): boolean =>
    chosen.some((flag) =>
      flag
        .replaceAll('_', '-')
        .replace(/^--no-/, '--')
        .startsWith(`--${name}`),
    );
  const flags: string[] = [];
  if (!mentions('max-semi-space-size') && !mentions('max-heap-size')) {
    flags.push(`--max-semi-space-size=${SERVING_SEMI_SPACE_MIB}`);
  }
  if (facts.cores <= SINGLE_THREADED_GC_MAX_CORES && !mentions('single-threaded-gc')) {
    flags.push('--single-threaded-gc');
  }
  return flags;
}

/** What `kvs2 serve` has to add to its own process; nothing when it already runs with it all. */
export function servingRuntimeChanges(facts: RuntimeFacts): RuntimeChanges {
  const env: Record<string, string> = {};
  if (facts.glibc && facts.env.MALLOC_MMAP_THRESHOLD_ === undefined) {
    env.MALLOC_MMAP_THRESHOLD_ = MALLOC_MMAP_THRESHOLD;
  }
  return { env, nodeFlags: servingNodeFlags(facts) };
}
