import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus } from 'node:os';

/**
 * Child processes of the suite: every one is spawned through `spawnManaged` (optionally pinned to a core
 * with taskset), registered, and stopped by `stopAll` on the way out, also after a failure or Ctrl-C.
 */

const registry = new Set<ManagedProcess>();

/** Cores for the server under test and for the load generator; both 0 on a one-core machine. */
export const SERVER_CORE = 0;
export const CLIENT_CORE = cpus().length > 1 ? 1 : 0;

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

export interface SpawnOptions {
  /** Pin to this core with taskset; the process's children inherit it. */
  readonly core?: number;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /** Append stdout and stderr to this file. */
  readonly logFile?: string;
  /** Called with each stdout line. */
  readonly onLine?: (line: string) => void;
  /** 'pipe' to write to the process's stdin (`child.stdin`); default: none. */
  readonly stdin?: 'pipe';
}

export class ManagedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  #exitCode: number | null | undefined;

  constructor(name: string, child: ChildProcess) {
    this.name = name;
    this.child = child;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.#exitCode = code ?? (signal ? -1 : null);
        registry.delete(this);
        resolve(this.#exitCode);
      });
      child.once('error', () => {
        this.#exitCode = -1;
        registry.delete(this);
        resolve(-1);
      });
    });
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error(`${this.name} has no pid (it did not start)`);
    return this.child.pid;
  }

  get running(): boolean {
    return this.#exitCode === undefined;
  }

  /** SIGTERM, then SIGKILL after `graceMs`. Resolves once the process is gone. */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/** Starts a process (through taskset when a core is given) and registers it for `stopAll`. */
export function spawnManaged(name: string, command: string, args: readonly string[], options: SpawnOptions = {}) {
  const [file, argv] =
    options.core === undefined ? [command, [...args]] : ['taskset', ['-c', String(options.core), command, ...args]];
  const child = spawn(file, argv, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: [options.stdin ?? 'ignore', 'pipe', 'pipe'],
  });
  const managed = new ManagedProcess(name, child);
  registry.add(managed);
  const log = options.logFile === undefined ? undefined : createWriteStream(options.logFile, { flags: 'a' });
  let pending = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    log?.write(chunk);
    if (options.onLine === undefined) return;
    pending += chunk.toString('utf8');
    let newline = pending.indexOf('\n');
    while (newline >= 0) {
      options.onLine(pending.slice(0, newline));
      pending = pending.slice(newline + 1);
      newline = pending.indexOf('\n');
    }
  });
  child.stderr?.on('data', (chunk: Buffer) => log?.write(chunk));
  child.once('exit', () => log?.end());
  return managed;
}

const cleanups = new Set<() => Promise<void>>();

/** Something to undo on the way out that is not a child process (e.g. stopping a Kafka cluster). */
export function registerCleanup(cleanup: () => Promise<void>): () => void {
  cleanups.add(cleanup);
  return () => cleanups.delete(cleanup);
}

/** Stops every process the suite started that still runs, newest first, then runs the cleanups. */
export async function stopAll(): Promise<void> {
  const running = [...registry].reverse();
  await Promise.all(running.map((p) => p.stop(5_000)));
  for (const cleanup of [...cleanups].reverse()) {
    cleanups.delete(cleanup);
    await cleanup().catch(() => {});
  }
}

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly seconds: number;
}

export interface RunOptions {
  readonly core?: number;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /** Killed (SIGKILL) after this long: every run is bounded. */
  readonly timeoutMs: number;
  /** Written to stdin, then stdin is closed. */
  readonly input?: string | Buffer | AsyncIterable<Buffer | string>;
}

/** Runs a command to completion (bounded by `timeoutMs`) and collects its output. */
export async function run(command: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
  const [file, argv] =
    options.core === undefined ? [command, [...args]] : ['taskset', ['-c', String(options.core), command, ...args]];
  const started = process.hrtime.bigint();
  const child = spawn(file, argv, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  const managed = new ManagedProcess(command, child);
  registry.add(managed);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout?.on('data', (c: Buffer) => out.push(c));
  child.stderr?.on('data', (c: Buffer) => err.push(c));
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
  if (options.input !== undefined && child.stdin) {
    const stdin = child.stdin;
    stdin.on('error', () => {}); // the child may exit before reading everything; its exit code tells
    const input = options.input;
    if (typeof input === 'string' || Buffer.isBuffer(input)) {
      stdin.end(input);
    } else {
      void (async () => {
        for await (const chunk of input) {
          if (!stdin.write(chunk)) await new Promise((r) => stdin.once('drain', r));
        }
        stdin.end();
      })().catch(() => stdin.destroy());
    }
  }
  const code = await managed.exited;
  clearTimeout(timer);
  return {
    code,
    stdout: Buffer.concat(out).toString('utf8'),
    stderr: Buffer.concat(err).toString('utf8'),
    seconds: Number(process.hrtime.bigint() - started) / 1e9,
  };
}

/** Like `run`, but throws with the command's stderr when it fails. */
export async function runChecked(command: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
  const result = await run(command, args, options);
  if (result.code !== 0) {
    const tail = (result.stderr || result.stdout).trim().split('\n').slice(-15).join('\n');
    throw new Error(`${command} ${args.slice(0, 6).join(' ')} ... exited with ${result.code}:\n${tail}`);
  }
  return result;
}

/** A free TCP port on 127.0.0.1 (bound and released; the caller binds it right away). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** User + system CPU seconds a process (all its threads) has used so far; 0 once it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After the command name: state is field 3, utime 14 and stime 15 (1-based) → indices 11 and 12.
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

/** Resident set size in bytes (VmRSS), or null once the process is gone. */
export function rssBytes(pid: number): number | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+) kB/m.exec(status);
    return match ? Number(match[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/**
 * RSS split as the kernel counts it: anonymous memory (the process's own heap) and file-backed pages
 * (for kvs2, mostly LMDB's memory map: page cache the kernel can drop and read again under pressure).
 */
export function rssParts(pid: number): { anonBytes: number; fileBytes: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const anon = /^RssAnon:\s+(\d+) kB/m.exec(status);
    const file = /^RssFile:\s+(\d+) kB/m.exec(status);
    return anon && file ? { anonBytes: Number(anon[1]) * 1024, fileBytes: Number(file[1]) * 1024 } : null;
  } catch {
    return null;
  }
}

/** Busy and total jiffies of each core, from /proc/stat. */
export function coreTimes(): Array<{ busy: number; total: number }> {
  const lines = readFileSync('/proc/stat', 'utf8').split('\n');
  const cores: Array<{ busy: number; total: number }> = [];
  for (const line of lines) {
    if (!/^cpu\d+ /.test(line)) continue;
    const v = line.split(/\s+/).slice(1).map(Number);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    cores.push({ busy: total - idle, total });
  }
  return cores;
}

/** Percent busy of each core between two `coreTimes()` readings. */
export function coreBusyPercent(
  before: ReadonlyArray<{ busy: number; total: number }>,
  after: ReadonlyArray<{ busy: number; total: number }>,
): number[] {
  return after.map((a, i) => {
    const b = before[i] ?? { busy: 0, total: 0 };
    const total = a.total - b.total;
    return total > 0 ? Math.round(((a.busy - b.busy) / total) * 1000) / 10 : 0;
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` every `intervalMs` until it returns true, or throws after `timeoutMs`. */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  intervalMs = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
