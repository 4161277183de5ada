import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { KVS2_BIN } from './paths.js';

export interface LogLine {
  readonly level: string;
  readonly msg: string;
  readonly [field: string]: unknown;
}

export interface ServerProcessOptions {
  readonly dataDir: string;
  /** Extra flags after `serve`. */
  readonly args?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
}

/**
 * A real `kvs2 serve` process on a free loopback port, as a user would run it. Collects its JSON log
 * lines so tests can wait for events and assert on them.
 */
export class ServerProcess {
  readonly lines: LogLine[] = [];
  readonly stderr: string[] = [];
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #port: number | undefined;
  #waiters: Array<() => void> = [];

  private constructor(child: ChildProcess) {
    this.child = child;
    this.exited = once(child, 'exit').then(([code, signal]) => ({
      code: code as number | null,
      signal: signal as NodeJS.Signals | null,
    }));
    this.exited.then(() => this.#notify());
    if (child.stdout) {
      createInterface({ input: child.stdout }).on('line', (text) => {
        try {
          this.lines.push(JSON.parse(text) as LogLine);
        } catch {
          this.lines.push({ level: 'unparsed', msg: text });
        }
        this.#notify();
      });
    }
    child.stderr?.on('data', (chunk: Buffer) => this.stderr.push(chunk.toString()));
  }

  static async start(options: ServerProcessOptions): Promise<ServerProcess> {
    const server = ServerProcess.launch(options);
    await server.listening();
    return server;
  }

  /** Spawns the node without waiting for it to listen: for what it logs before (a bootstrap from peers). */
  static launch(options: ServerProcessOptions): ServerProcess {
    const child = spawn(
      process.execPath,
      [KVS2_BIN, 'serve', '--listen', '127.0.0.1:0', '--data-dir', options.dataDir, ...(options.args ?? [])],
      { env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    return new ServerProcess(child);
  }

  /** Waits for the `kvs2 listening` line, after which `port` and `address` are known. */
  async listening(timeoutMs = 20_000): Promise<void> {
    const listening = await this.waitForLine((line) => line.msg.startsWith('kvs2 listening'), timeoutMs);
    this.#port = listening.port as number;
  }

  get port(): number {
    if (this.#port === undefined) throw new Error('server has not reported its port');
    return this.#port;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** The first log line matching, waiting for it if needed. */
  async waitForLine(match: (line: LogLine) => boolean, timeoutMs = 20_000): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.find(match);
      if (found) return found;
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`server exited before the expected log line; output:\n${this.#output()}`);
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error(`timed out waiting for a log line; output:\n${this.#output()}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  waitUntilCaughtUp(timeoutMs = 20_000): Promise<LogLine> {
    return this.waitForLine((line) => line.msg === 'replica caught up with the log', timeoutMs);
  }

  /** Sends a signal and waits for the exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }

  /** Kills without any chance to clean up, as a power cut or OOM kill would. */
  kill9(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return this.stop('SIGKILL');
  }

  #notify(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  #output(): string {
    return [...this.lines.map((l) => JSON.stringify(l)), ...this.stderr].join('\n');
  }
}
