import { performance } from 'node:perf_hooks';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** V8's gc() as exposed by --expose-gc; `flavor: 'last-resort'` also returns pooled pages to the OS. */
type GcFunction = (options?: { type?: 'major'; execution?: 'sync'; flavor?: 'last-resort' }) => void;

export interface HeapFigures {
  /** Bytes of heap pages V8 holds (committed and touched). */
  readonly physicalBytes: number;
  readonly usedBytes: number;
}

/** Where a release is reported (a pino logger is one). */
export interface ReleaseLogger {
  info(fields: Record<string, unknown>, message: string): void;
}

export interface MemoryReleaseOptions {
  readonly logger: ReleaseLogger;
  /** How often to look for an idle moment after heap growth (default 5 s). */
  readonly checkEveryMs?: number;
  /** Idle: the event loop was busy less than this share of the last interval (default 0.05). */
  readonly idleBelow?: number;
  /** Heap growth since the last release that is worth a release (default 64 MiB). */
  readonly growthBytes?: number;
  /** For tests: the collector and the figures it is judged by. */
  readonly collect?: () => void;
  readonly heapFigures?: () => HeapFigures;
  readonly busyShare?: () => number;
}

const MIB = 1024 * 1024;

/**
 * Gives memory back to the OS after a burst of allocation: the bootstrap of a replica (records in flight
 * by the million) or a heavy load that has ended.
 *
 * V8 keeps the heap it grew and the pages it freed (its page pool) until its memory reducer runs, and in
 * Node that reducer waits for an allocation rate it never sees once the process is idle, because no GC
 * runs to measure it (`--trace-memory-reducer`: "high alloc, foreground" every 8 s, forever); what that
 * leaves resident after a bootstrap is in docs/benchmarks.md, "Why these constants".
 *
 * So the node runs that GC itself, when nobody waits for it: once when the replica first catches up
 * (before the health check says SERVING), and afterwards when the event loop has been idle for a whole
 * interval after the heap grew by `growthBytes` since the last release.
 */
export class MemoryRelease {
  readonly #logger: ReleaseLogger;
  readonly #idleBelow: number;
  readonly #growthBytes: number;
  readonly #collect: () => void;
  readonly #heapFigures: () => HeapFigures;
  readonly #busyShare: () => number;
  readonly #timer: NodeJS.Timeout;
  #physicalAfterRelease: number;

  constructor(options: MemoryReleaseOptions) {
    this.#logger = options.logger;
    this.#idleBelow = options.idleBelow ?? 0.05;
    this.#growthBytes = options.growthBytes ?? 64 * MIB;
    this.#collect = options.collect ?? lastResortGc();
    this.#heapFigures = options.heapFigures ?? v8HeapFigures;
    this.#busyShare = options.busyShare ?? eventLoopBusyShare();
    this.#physicalAfterRelease = this.#heapFigures().physicalBytes;
    this.#timer = setInterval(() => this.check(), options.checkEveryMs ?? 5_000);
    // Never what keeps the process alive.
    this.#timer.unref();
  }

  /** Releases now if the heap grew since the last release (whatever the load). */
  releaseIfGrown(reason: string): boolean {
    if (this.#heapFigures().physicalBytes - this.#physicalAfterRelease < this.#growthBytes) return false;
    this.#release(reason);
    return true;
  }

  /** One periodic check; public so tests drive it without waiting for the timer. */
  check(): boolean {
    // Read every time, so each check judges the interval since the previous one.
    const busy = this.#busyShare();
    if (busy >= this.#idleBelow) return false;
    return this.releaseIfGrown('idle after heap growth');
  }

  close(): void {
    clearInterval(this.#timer);
  }

  #release(reason: string): void {
    const before = this.#heapFigures();
    const rssBefore = process.memoryUsage.rss();
    const started = performance.now();
    this.#collect();
    const tookMs = performance.now() - started;
    const after = this.#heapFigures();
    this.#physicalAfterRelease = after.physicalBytes;
    this.#logger.info(
      {
        reason,
        tookMs: Math.round(tookMs),
        heapMiB: {
          before: toMiB(before.physicalBytes),
          after: toMiB(after.physicalBytes),
          used: toMiB(after.usedBytes),
        },
        rssMiB: { before: toMiB(rssBefore), after: toMiB(process.memoryUsage.rss()) },
      },
      'released memory to the OS',
    );
  }
}

function v8HeapFigures(): HeapFigures {
  const stats = getHeapStatistics();
  return { physicalBytes: stats.total_physical_size, usedBytes: stats.used_heap_size };
}

/** The share of time the event loop was busy since the previous call. */
function eventLoopBusyShare(): () => number {
  let previous = performance.eventLoopUtilization();
  return () => {
    const now = performance.eventLoopUtilization();
    const share = performance.eventLoopUtilization(now, previous).utilization;
    previous = now;
    return share;
  };
}

/**
 * V8's gc() without starting Node with --expose-gc: the flag is set at run time and the function taken
 * from a new context, which installs it (what Jest's leak detector does), then the flag is cleared again
 * so no later context gets it.
 */
function lastResortGc(): () => void {
  setFlagsFromString('--expose-gc');
  try {
    const gc = runInNewContext('gc') as GcFunction;
    return () => gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
}

function toMiB(bytes: number): number {
  return Math.round(bytes / MIB);
}
