import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { HealthClient } from './health-client.js';

/** bin/kvs2.js, from dist/scripts/faults/ where this runs. */
const KVS2_BIN = fileURLToPath(new URL('../../../bin/kvs2.js', import.meta.url));
const TAIL_LINES = 40;
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 20_000;

/** A node that exited while nobody asked it to: a crash, with the end of its log. */
export interface NodeCrash {
  readonly node: string;
  readonly atMs: number;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly tail: readonly string[];
}

export interface ClusterNodeOptions {
  readonly name: string;
  readonly port: number;
  readonly dataDir: string;
  /** Flags after `serve --listen ... --data-dir ...`. */
  readonly args: readonly string[];
  /**
   * Peers (`--bootstrap-from`, in the order asked) an empty start installs a store from; none: read the
   * topic. Given after `args`; a function, because the nodes of a cluster name each other.
   */
  readonly bootstrapFrom?: () => readonly ClusterNode[];
  /** Where every line the node prints is appended. */
  readonly logFile: string;
  /** Called once for every crash. */
  readonly onCrash: (crash: NodeCrash) => void;
  readonly startedAt: number;
}

/**
 * One `kvs2 serve` process of the checked cluster, always on the same port so clients keep their address
 * across restarts. Kills, pauses and wipes come from the nemesis; any other exit is recorded as a crash.
 */
export class ClusterNode {
  readonly name: string;
  readonly address: string;
  readonly health: HealthClient;
  readonly #options: ClusterNodeOptions;
  readonly #log: WriteStream;
  #child: ChildProcess | undefined;
  #exited: Promise<unknown> = Promise.resolve();
  #stopping = false;
  #paused = false;
  #tail: string[] = [];
  #peerBootstraps = 0;
  #topicFallbacks = 0;

  constructor(options: ClusterNodeOptions) {
    this.#options = options;
    this.name = options.name;
    this.address = `127.0.0.1:${options.port}`;
    this.health = new HealthClient(this.address);
    this.#log = createWriteStream(options.logFile, { flags: 'a' });
  }

  get running(): boolean {
    return this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** The peers an empty start asks, in order. */
  get bootstrapFrom(): readonly ClusterNode[] {
    return this.#options.bootstrapFrom?.() ?? [];
  }

  /** Starts that installed a peer's snapshot, and those where no peer gave one (the topic was read). */
  get bootstraps(): { readonly fromPeer: number; readonly topicFallback: number } {
    return { fromPeer: this.#peerBootstraps, topicFallback: this.#topicFallbacks };
  }

  /**
   * Spawns the node and resolves once it listens. A node that exits before that has crashed (recorded);
   * this then resolves false, and the caller may try again later.
   */
  async start(): Promise<boolean> {
    if (this.running) return true;
    const { port, dataDir, args } = this.#options;
    this.#stopping = false;
    this.#paused = false;
    const peers = this.bootstrapFrom.map((peer) => peer.address).join(',');
    const child = spawn(
      process.execPath,
      [
        KVS2_BIN,
        'serve',
        '--listen',
        `127.0.0.1:${port}`,
        '--data-dir',
        dataDir,
        ...args,
        ...(peers === '' ? [] : ['--bootstrap-from', peers]),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.#child = child;
    this.#note(`--- ${this.name} started (pid ${child.pid})`);
    let listening = false;
    let wake: () => void = () => {};
    const woken = new Promise<void>((resolve) => {
      wake = resolve;
    });
    const exited = once(child, 'exit').then(([code, signal]) => {
      this.#note(`--- ${this.name} exited (code ${code}, signal ${signal})`);
      if (!this.#stopping) {
        this.#options.onCrash({
          node: this.name,
          atMs: Date.now() - this.#options.startedAt,
          code: code as number | null,
          signal: signal as NodeJS.Signals | null,
          tail: [...this.#tail],
        });
      }
      wake();
    });
    this.#exited = exited;
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      this.#note(line);
      // The messages of src/replica/peer-bootstrap.ts.
      if (line.includes('"bootstrapped from peer ')) this.#peerBootstraps++;
      if (line.includes('"no peer gave a usable snapshot')) this.#topicFallbacks++;
      if (!listening && line.includes('"kvs2 listening')) {
        listening = true;
        wake();
      }
    });
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => this.#note(line));
    const timer = setTimeout(wake, START_TIMEOUT_MS);
    await woken;
    clearTimeout(timer);
    if (!listening && this.running) throw new Error(`${this.name} did not listen within ${START_TIMEOUT_MS} ms`);
    return listening && this.running;
  }

  /** SIGKILL, as a crash or an OOM kill would; resolves once the process is gone. */
  async kill9(): Promise<void> {
    await this.#stop('SIGKILL');
  }

  /** SIGTERM (SIGKILL if it does not exit in time): the end of a run. */
  async stop(): Promise<void> {
    if (this.#paused) this.resume();
    await this.#stop('SIGTERM');
    this.health.close();
    await new Promise<void>((resolve) => this.#log.end(resolve));
  }

  /** SIGSTOP: the process keeps its connections but answers nothing, as in a long pause. */
  pause(): void {
    if (!this.running || this.#paused) return;
    this.#child?.kill('SIGSTOP');
    this.#paused = true;
    this.#note(`--- ${this.name} paused`);
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    if (this.running) this.#child?.kill('SIGCONT');
    this.#note(`--- ${this.name} resumed`);
  }

  /** Deletes the data folder of a stopped node, as a lost disk would: it must rebuild from the log. */
  async wipe(): Promise<void> {
    if (this.running) throw new Error(`${this.name} must be stopped before its data is wiped`);
    await rm(this.#options.dataDir, { recursive: true, force: true });
    this.#note(`--- ${this.name} data wiped`);
  }

  /** The last lines the node printed. */
  tail(): readonly string[] {
    return [...this.#tail];
  }

  async #stop(signal: NodeJS.Signals): Promise<void> {
    this.#stopping = true;
    const child = this.#child;
    if (child === undefined || !this.running) return;
    if (this.#paused && signal !== 'SIGKILL') child.kill('SIGCONT');
    this.#paused = false;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await this.#exited;
    clearTimeout(timer);
  }

  #note(line: string): void {
    this.#tail.push(line);
    if (this.#tail.length > TAIL_LINES) this.#tail.shift();
    this.#log.write(`${line}\n`);
  }
}
