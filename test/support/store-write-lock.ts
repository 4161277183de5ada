import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { REPO_ROOT } from './paths.js';

/**
 * Another process holding a write transaction on a node's LMDB store, as a stalled disk or a backup tool
 * writing to it would: LMDB admits one writer at a time across processes, so the node's replica cannot
 * commit anything until it is released, while the node itself (its reads, its probes) keeps answering.
 */
const HOLDER = `
import { existsSync } from 'node:fs';
import { open } from 'lmdb';
const [dir, releaseFile] = process.argv.slice(1);
const env = open({ path: dir, maxDbs: 4, mapSize: 64 * 1024 ** 3 });
const pause = new Int32Array(new SharedArrayBuffer(4));
env.transactionSync(() => {
  process.stdout.write('held\\n');
  while (!existsSync(releaseFile)) Atomics.wait(pause, 0, 0, 20);
});
await env.close();
`;

export class StoreWriteLock {
  readonly #child: ChildProcess;
  readonly #releaseFile: string;
  readonly #exited: Promise<unknown>;

  private constructor(child: ChildProcess, releaseFile: string) {
    this.#child = child;
    this.#releaseFile = releaseFile;
    this.#exited = once(child, 'exit');
  }

  /** Resolves once the other process holds the write lock of the LMDB environment in `storeDir`. */
  static async hold(storeDir: string, scratchDir: string): Promise<StoreWriteLock> {
    const releaseFile = join(scratchDir, `release-${process.pid}-${Date.now()}`);
    const child = spawn(process.execPath, ['--input-type=module', '-e', HOLDER, storeDir, releaseFile], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lock = new StoreWriteLock(child, releaseFile);
    const errors: string[] = [];
    child.stderr?.on('data', (chunk: Buffer) => errors.push(chunk.toString()));
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    const held = new Promise<void>((resolve, reject) => {
      lines.on('line', (line) => line === 'held' && resolve());
      child.once('exit', (code) => reject(new Error(`the lock holder exited (${code}): ${errors.join('')}`)));
    });
    await held;
    return lock;
  }

  /** Ends the transaction (nothing was written) and waits for the process to exit. */
  async release(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    await writeFile(this.#releaseFile, '');
    await this.#exited;
  }
}
