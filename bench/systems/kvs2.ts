import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, type ManagedProcess, SERVER_CORE, spawnManaged, waitFor } from '../lib/processes.js';
import { treePath } from '../lib/tree.js';
import { isServing } from './grpc-health.js';
import type { GrpcSystem } from './system.js';

export interface Kvs2Options {
  readonly name: string;
  readonly dataDir: string;
  readonly logFile: string;
  readonly kafka?: { readonly brokers: string; readonly topic: string; readonly extraPids: () => number[] };
  /** Extra node flags, e.g. --cpu-prof. */
  readonly nodeFlags?: readonly string[];
  /** Extra environment variables for the node's process (e.g. MALLOC_ARENA_MAX). */
  readonly env?: Readonly<Record<string, string>>;
  /** Core to pin to (default: the server core). */
  readonly core?: number;
  /** How long to wait for SERVING (the replica caught up). */
  readonly readyTimeoutMs?: number;
  /** Root of the kvs2 build to run (default: the run's own tree); a baseline comparison runs another. */
  readonly tree?: string;
  /** Extra `kvs2 serve` flags, after the suite's own (so `--log-level` given here wins). */
  readonly serverArgs?: readonly string[];
}

export interface Kvs2Node extends GrpcSystem {
  readonly pid: number;
  /** Milliseconds from spawn to the first "listening" line and to SERVING. */
  readonly startup: { readonly listeningMs: number; readonly servingMs: number };
}

/** Starts `kvs2 serve` pinned to the server core, and waits until its health says SERVING. */
export async function startKvs2(options: Kvs2Options): Promise<Kvs2Node> {
  mkdirSync(options.dataDir, { recursive: true });
  const port = await freePort();
  const target = `127.0.0.1:${port}`;
  const tree = options.tree ?? treePath('.');
  const args = [
    ...(options.nodeFlags ?? []),
    join(tree, 'bin/kvs2.js'),
    'serve',
    '--listen',
    target,
    '--data-dir',
    options.dataDir,
    '--log-level',
    'info',
  ];
  if (options.kafka) args.push('--kafka-brokers', options.kafka.brokers, '--topic', options.kafka.topic);
  args.push(...(options.serverArgs ?? []));
  const started = performance.now();
  let listeningMs = -1;
  const proc: ManagedProcess = spawnManaged(options.name, process.execPath, args, {
    core: options.core ?? SERVER_CORE,
    cwd: tree,
    ...(options.env === undefined ? {} : { env: { ...process.env, ...options.env } }),
    logFile: options.logFile,
    onLine: (line) => {
      if (listeningMs < 0 && line.includes('kvs2 listening')) listeningMs = performance.now() - started;
    },
  });
  try {
    await waitFor(
      `${options.name} to report SERVING (log: ${options.logFile})`,
      async () => {
        if (!proc.running) throw new Error(`${options.name} exited during start-up; see ${options.logFile}`);
        return listeningMs >= 0 && (await isServing(target));
      },
      options.readyTimeoutMs ?? 120_000,
      50,
    );
  } catch (error) {
    await proc.stop();
    throw error;
  }
  const servingMs = performance.now() - started;
  const kafka = options.kafka;
  return {
    name: options.name,
    target,
    pid: proc.pid,
    startup: { listeningMs, servingMs },
    durability: kafka
      ? 'Kafka acks=all (1 broker, Kafka default: no fsync per write)'
      : 'embedded log (segment files), fdatasync per group commit',
    serverPids: () => [proc.pid, ...(kafka ? kafka.extraPids() : [])],
    stop: () => proc.stop(15_000),
  };
}
