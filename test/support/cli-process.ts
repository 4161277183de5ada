import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { KVS2_BIN } from './paths.js';

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: Buffer;
  readonly stderr: string;
}

export interface CliOptions {
  /** Written to stdin, which is then closed; without it stdin is empty. */
  readonly input?: Buffer | string;
  readonly env?: Readonly<Record<string, string>>;
  /** The kvs2 binary to run (default: this repository's bin/kvs2.js). */
  readonly bin?: string;
}

/**
 * A `kvs2` command as a user runs it: the binary on this Node, in its own process, its output collected.
 * KVS2_ENDPOINT is removed from the inherited environment so that only what a test gives counts.
 */
export class CliProcess {
  readonly child: ChildProcess;
  readonly result: Promise<CliResult>;
  #stdout: Buffer[] = [];
  #stderr: string[] = [];
  #waiters: Array<() => void> = [];

  constructor(args: readonly string[], options: CliOptions = {}) {
    const { KVS2_ENDPOINT: _inherited, ...env } = process.env;
    this.child = spawn(process.execPath, [options.bin ?? KVS2_BIN, ...args], {
      env: { ...env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stdout?.on('data', (chunk: Buffer) => {
      this.#stdout.push(chunk);
      this.#notify();
    });
    this.child.stderr?.on('data', (chunk: Buffer) => this.#stderr.push(chunk.toString()));
    this.child.stdin?.end(options.input ?? '');
    this.result = once(this.child, 'close').then(([code, signal]) => {
      this.#notify();
      return {
        code: code as number | null,
        signal: signal as NodeJS.Signals | null,
        stdout: this.stdout,
        stderr: this.#stderr.join(''),
      };
    });
  }

  get stdout(): Buffer {
    return Buffer.concat(this.#stdout);
  }

  /** Waits until stdout satisfies `match` (e.g. holds a line), failing if the process ends first. */
  async waitForStdout(match: (stdout: string) => boolean, timeoutMs = 20_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = this.stdout.toString();
      if (match(text)) return text;
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`kvs2 exited before the expected output; stdout:\n${text}\nstderr:\n${this.#stderr.join('')}`);
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error(`timed out waiting for kvs2's output; stdout so far:\n${text}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  #notify(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}

/** Runs a `kvs2` command to its end. */
export function runKvs2(args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  return new CliProcess(args, options).result;
}
