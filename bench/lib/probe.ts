import { join } from 'node:path';
import { type ManagedProcess, SERVER_CORE, spawnManaged, waitFor } from './processes.js';

/** One measurement window of the probe (bench/in-process-probe.ts), as it answers it. */
export interface ProbeWindow {
  readonly kind: 'get' | 'getMany';
  readonly perCall: boolean;
  readonly calls: number;
  readonly seconds: number;
  readonly callsPerSec: number;
  /** Reads that found no value: every key read was loaded, so anything but 0 is a broken measurement. */
  readonly misses: number;
  /** Per-call latency in nanoseconds (nearest rank over every call of the window), when timed per call. */
  readonly latencyNs: { p50: number; p99: number; p999: number; max: number; mean: number } | null;
  /** Records the replica (or the node, for the co-located reader) applied during the window, and per second. */
  readonly appliedRecords: number;
  readonly appliedPerSec: number;
  /** Garbage collections in this process during the window (PerformanceObserver 'gc' entries). */
  readonly gc: { count: number; totalMs: number; maxMs: number };
  /** This process's CPU (all threads: the read loop, lmdb-js's writer, the Kafka client, GC) per second. */
  readonly cpuPercent: number;
}

export type ProbeLatency = NonNullable<ProbeWindow['latencyNs']>;

export interface ProbeStart {
  readonly name: string;
  /** Root of the build to run (the run's snapshot of the tree). */
  readonly tree: string;
  readonly cwd: string;
  readonly logFile: string;
  /** bench/in-process-probe.ts's flags: --mode, --data-dir, --keys, and --brokers/--topic for a replica. */
  readonly args: readonly string[];
  /** How long opening may take (a replica catches up with the whole topic first). */
  readonly readyTimeoutMs: number;
  /** The core to pin it to (default: the server core, as the suite runs a server). */
  readonly core?: number;
  /** Node flags it starts with (default: none, Node's own settings). */
  readonly nodeFlags?: readonly string[];
}

/**
 * The orchestrator's side of bench/in-process-probe.ts: the measured process, started pinned to a core (the
 * server core unless told), asked one thing at a time over its stdin, answering on its stdout.
 */
export class Probe {
  readonly name: string;
  readonly #process: ManagedProcess;
  readonly #pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  #nextId = 1;
  #ready: { readyMs: number; records: number; keys: number } | undefined;

  private constructor(options: ProbeStart) {
    this.name = options.name;
    this.#process = spawnManaged(
      options.name,
      process.execPath,
      [...(options.nodeFlags ?? []), join(options.tree, 'dist/bench/in-process-probe.js'), ...options.args],
      {
        core: options.core ?? SERVER_CORE,
        cwd: options.cwd,
        logFile: options.logFile,
        stdin: 'pipe',
        onLine: (line) => this.#onLine(line),
      },
    );
    void this.#process.exited.then((code) => {
      for (const waiter of this.#pending.values()) {
        waiter.reject(new Error(`${this.name} exited (${code}); see ${options.logFile}`));
      }
      this.#pending.clear();
    });
  }

  /** Starts the probe and waits until its reader is open (a replica: caught up with the topic). */
  static async start(options: ProbeStart): Promise<Probe> {
    const probe = new Probe(options);
    await waitFor(
      `${options.name} to open its reader (log: ${options.logFile})`,
      () => {
        if (!probe.#process.running) throw new Error(`${options.name} exited during start-up; see ${options.logFile}`);
        return probe.#ready !== undefined;
      },
      options.readyTimeoutMs,
      50,
    );
    return probe;
  }

  get pid(): number {
    return this.#process.pid;
  }

  /**
   * Stops the process (SIGSTOP) until resume(): while another probe is measured, this one's threads (a
   * replica applying the writer's records) take no time from it on the core they share.
   */
  pause(): void {
    if (this.#process.running) process.kill(this.#process.pid, 'SIGSTOP');
  }

  resume(): void {
    if (this.#process.running) process.kill(this.#process.pid, 'SIGCONT');
  }

  /** Milliseconds from the probe's start to its reader being open (and, for a replica, caught up). */
  get readyMs(): number {
    return this.#ready?.readyMs ?? Number.NaN;
  }

  measure(kind: 'get' | 'getMany', seconds: number, perCall: boolean): Promise<ProbeWindow> {
    return this.#ask({ op: 'measure', kind, seconds, perCall }) as Promise<ProbeWindow>;
  }

  /** Records applied over all partitions so far (by the replica, or by the node whose store is read), and keys held. */
  applied(): Promise<{ records: number; keys: number }> {
    return this.#ask({ op: 'applied' }) as Promise<{ records: number; keys: number }>;
  }

  /** Latency of two back-to-back clock reads in the probe: the floor of every per-call figure. */
  timerFloor(): Promise<ProbeLatency> {
    return this.#ask({ op: 'floor' }) as Promise<ProbeLatency>;
  }

  async stop(): Promise<void> {
    if (this.#process.running) await this.#ask({ op: 'close' }).catch(() => {});
    await this.#process.stop();
  }

  #ask(command: Record<string, unknown>): Promise<unknown> {
    const id = this.#nextId++;
    const stdin = this.#process.child.stdin;
    if (!this.#process.running || stdin === null) return Promise.reject(new Error(`${this.name} is not running`));
    const answer = new Promise((resolve, reject) => this.#pending.set(id, { resolve, reject }));
    stdin.write(`${JSON.stringify({ id, ...command })}\n`);
    return answer;
  }

  #onLine(line: string): void {
    const message = JSON.parse(line) as {
      event?: string;
      id?: number;
      result?: unknown;
      error?: string;
      readyMs?: number;
      records?: number;
      keys?: number;
    };
    if (message.event === 'ready') {
      this.#ready = { readyMs: message.readyMs ?? 0, records: message.records ?? 0, keys: message.keys ?? 0 };
      return;
    }
    const waiter = message.id === undefined ? undefined : this.#pending.get(message.id);
    if (waiter === undefined || message.id === undefined) return;
    this.#pending.delete(message.id);
    if (message.error !== undefined) waiter.reject(new Error(`${this.name}: ${message.error}`));
    else waiter.resolve(message.result);
  }
}
