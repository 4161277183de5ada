/**
 * The measured process of bench/in-process-reads.ts: a Node application that holds kvs2's data in its own
 * process, either as an in-process replica of the topic (`openReplica`, applying the topic's writes itself)
 * or as a running node's store read in place (`openColocatedReader`), and that times its own synchronous
 * reads when asked. Commands arrive as JSON lines on stdin, answers leave as JSON lines on stdout (nothing
 * else is written there: the orchestrator parses every line); errors go to stderr.
 *
 *   node dist/bench/in-process-probe.js --mode replica --brokers host:port --topic t --data-dir <own dir> --keys N
 *     [--apply-on worker|caller]
 *   node dist/bench/in-process-probe.js --mode colocated --data-dir <the node's --data-dir> --keys N
 *
 * A read loop runs on the main thread, the one an application's code runs on, and yields to the event loop
 * (setImmediate) after every millisecond of reads: there the replica applies what Kafka delivered, as it
 * would between an application's own tasks. A call's latency never includes those turns; calls per second
 * do (wall time over the whole window).
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { Command } from 'commander';
import { openColocatedReader, openReplica } from '../src/replica-lib/index.js';
import { keyFor, seededRandom } from './lib/dataset.js';
import type { ProbeWindow } from './lib/probe.js';

const options = new Command('in-process-probe')
  .requiredOption('--mode <mode>', 'replica (openReplica on the topic) or colocated (openColocatedReader)')
  .requiredOption('--data-dir <dir>', "the replica's own data dir, or the node's")
  .requiredOption('--keys <n>', 'keys loaded (reads pick among them)', Number)
  .option('--brokers <list>', 'Kafka bootstrap brokers (replica)')
  .option('--topic <name>', 'the topic (replica)')
  .option('--multi-get-keys <n>', 'keys per getMany', Number, 100)
  .option(
    '--apply-on <thread>',
    "replica: openReplica's applyOn (worker: the replica on a thread of its own)",
    'caller',
  )
  .parse()
  .opts<{
    mode: string;
    dataDir: string;
    keys: number;
    brokers?: string;
    topic?: string;
    multiGetKeys: number;
    applyOn: string;
  }>();

/** Distinct keys the loops read, drawn uniformly from all keys and built before any window: no key is made in a loop. */
const KEY_POOL = 1 << 17;
const GET_MANY_BATCHES = 1 << 11;
/** A read loop yields to the event loop after this long. */
const SLICE_NS = 1_000_000n;
/** In a loop without per-call timing, the clock is read every this many gets. */
const GETS_PER_CLOCK_READ = 128;

/** What both readers offer; the replica's status and the reader's differ, so `applied` is asked of each. */
interface Reader {
  get(key: Buffer): Buffer | undefined;
  getMany(keys: readonly Buffer[]): Array<Buffer | undefined>;
  /** Records applied so far over all partitions (the sum of the next offsets to apply), and keys held. */
  applied(): { records: number; keys: number };
  close(): Promise<void>;
}

const gcPauses: Array<{ start: number; duration: number }> = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) gcPauses.push({ start: entry.startTime, duration: entry.duration });
}).observe({ entryTypes: ['gc'] });

async function openReader(): Promise<Reader> {
  if (options.mode === 'replica') {
    if (options.brokers === undefined || options.topic === undefined)
      throw new Error('replica needs --brokers and --topic');
    const replica = await openReplica({
      kafka: { brokers: options.brokers.split(','), topic: options.topic },
      dataDir: options.dataDir,
      applyOn: options.applyOn === 'worker' ? 'worker' : 'caller',
      onFatal: (error) => process.stderr.write(`the replica stopped: ${error.stack ?? error.message}\n`),
    });
    await replica.whenCaughtUp(AbortSignal.timeout(60 * 60_000));
    return {
      get: (key) => replica.get(key),
      getMany: (keys) => replica.getMany(keys),
      applied: () => {
        const status = replica.status();
        return { records: status.partitions.reduce((sum, p) => sum + p.appliedOffset, 0), keys: status.keys };
      },
      close: () => replica.close(),
    };
  }
  if (options.mode === 'colocated') {
    const reader = await openColocatedReader({ dataDir: options.dataDir });
    return {
      get: (key) => reader.get(key),
      getMany: (keys) => reader.getMany(keys),
      applied: () => {
        const status = reader.status();
        return { records: status.partitions.reduce((sum, p) => sum + p.appliedOffset, 0), keys: status.keys };
      },
      close: () => reader.close(),
    };
  }
  throw new Error(`--mode is replica or colocated, not ${options.mode}`);
}

/** Latencies of one window, in a buffer that grows rarely (sized from the previous window). */
class Latencies {
  #values = new Float64Array(1 << 20);
  #length = 0;

  reset(expected: number): void {
    if (this.#values.length < expected) this.#values = new Float64Array(expected);
    this.#length = 0;
  }

  push(ns: number): void {
    if (this.#length === this.#values.length) {
      const grown = new Float64Array(this.#values.length * 2);
      grown.set(this.#values);
      this.#values = grown;
    }
    this.#values[this.#length++] = ns;
  }

  summary(): ProbeWindow['latencyNs'] {
    if (this.#length === 0) return null;
    const sorted = this.#values.subarray(0, this.#length).sort();
    let sum = 0;
    for (const v of sorted) sum += v;
    const at = (p: number) => sorted[Math.max(1, Math.ceil((p / 100) * sorted.length)) - 1] ?? 0;
    return { p50: at(50), p99: at(99), p999: at(99.9), max: sorted[sorted.length - 1] ?? 0, mean: sum / sorted.length };
  }
}

const latencies = new Latencies();
/** The fastest per-call rate seen so far: sizes the next window's buffer, so that it rarely grows mid-window. */
let fastestCallsPerSec = 200_000;

/** Gets one key a call: timed per call (two clock reads, kept apart from the call), or counted only. */
async function getLoop(reader: Reader, keys: readonly Buffer[], seconds: number, perCall: boolean) {
  const mask = keys.length - 1;
  const end = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
  let i = 0;
  let misses = 0;
  let now = process.hrtime.bigint();
  while (now < end) {
    const sliceEnd = now + SLICE_NS;
    if (perCall) {
      while (now < sliceEnd) {
        const key = keys[i++ & mask] as Buffer;
        const started = process.hrtime.bigint();
        const value = reader.get(key);
        now = process.hrtime.bigint();
        latencies.push(Number(now - started));
        if (value === undefined) misses++;
      }
    } else {
      while (now < sliceEnd) {
        for (let n = 0; n < GETS_PER_CLOCK_READ; n++) {
          if (reader.get(keys[i++ & mask] as Buffer) === undefined) misses++;
        }
        now = process.hrtime.bigint();
      }
    }
    await nextTurn();
    now = process.hrtime.bigint();
  }
  return { calls: i, misses };
}

/** getMany of a batch of keys a call, timed per call or counted only. */
async function getManyLoop(reader: Reader, batches: readonly Buffer[][], seconds: number, perCall: boolean) {
  const mask = batches.length - 1;
  const end = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
  let i = 0;
  let misses = 0;
  let now = process.hrtime.bigint();
  while (now < end) {
    const sliceEnd = now + SLICE_NS;
    while (now < sliceEnd) {
      const batch = batches[i++ & mask] as Buffer[];
      const started = perCall ? process.hrtime.bigint() : 0n;
      const values = reader.getMany(batch);
      now = process.hrtime.bigint();
      if (perCall) latencies.push(Number(now - started));
      for (const value of values) if (value === undefined) misses++;
    }
    await nextTurn();
    now = process.hrtime.bigint();
  }
  return { calls: i, misses };
}

async function measure(
  reader: Reader,
  pools: { keys: readonly Buffer[]; batches: readonly Buffer[][] },
  kind: 'get' | 'getMany',
  seconds: number,
  perCall: boolean,
): Promise<ProbeWindow> {
  latencies.reset(perCall ? Math.ceil(fastestCallsPerSec * seconds * 1.2) : 0);
  const appliedBefore = reader.applied().records;
  const cpuBefore = process.cpuUsage();
  const from = performance.now();
  const startedNs = process.hrtime.bigint();
  const { calls, misses } =
    kind === 'get'
      ? await getLoop(reader, pools.keys, seconds, perCall)
      : await getManyLoop(reader, pools.batches, seconds, perCall);
  const wallSec = Number(process.hrtime.bigint() - startedNs) / 1e9;
  const to = performance.now();
  const cpu = process.cpuUsage(cpuBefore);
  const appliedRecords = reader.applied().records - appliedBefore;
  // GC entries are delivered to the observer on a later turn.
  await sleep(20);
  const pauses = gcPauses.filter((p) => p.start >= from && p.start <= to);
  gcPauses.length = 0;
  if (perCall) fastestCallsPerSec = Math.max(fastestCallsPerSec, calls / wallSec);
  return {
    kind,
    perCall,
    calls,
    seconds: wallSec,
    callsPerSec: calls / wallSec,
    misses,
    latencyNs: perCall ? latencies.summary() : null,
    appliedRecords,
    appliedPerSec: appliedRecords / wallSec,
    gc: {
      count: pauses.length,
      totalMs: pauses.reduce((sum, p) => sum + p.duration, 0),
      maxMs: pauses.reduce((max, p) => Math.max(max, p.duration), 0),
    },
    cpuPercent: ((cpu.user + cpu.system) / 1e6 / wallSec) * 100,
  };
}

/** What two back-to-back clock reads measure: the floor under every per-call latency. */
function timerFloor(): ProbeWindow['latencyNs'] {
  latencies.reset(1 << 20);
  for (let n = 0; n < 1 << 20; n++) {
    const started = process.hrtime.bigint();
    latencies.push(Number(process.hrtime.bigint() - started));
  }
  return latencies.summary();
}

function pools(keys: number, batchSize: number): { keys: Buffer[]; batches: Buffer[][] } {
  const random = seededRandom(17);
  const pool = Array.from({ length: KEY_POOL }, () => keyFor(Math.floor(random() * keys)));
  const batches = Array.from({ length: GET_MANY_BATCHES }, () =>
    Array.from({ length: batchSize }, () => pool[Math.floor(random() * KEY_POOL)] as Buffer),
  );
  return { keys: pool, batches };
}

interface ProbeCommand {
  readonly id: number;
  readonly op: 'measure' | 'applied' | 'floor' | 'close';
  readonly kind?: 'get' | 'getMany';
  readonly seconds?: number;
  readonly perCall?: boolean;
}

function send(message: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

async function main(): Promise<void> {
  const opened = performance.now();
  const reader = await openReader();
  const readyMs = performance.now() - opened;
  const readPools = pools(options.keys, options.multiGetKeys);
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= reader.close();
    return closing;
  };
  process.once('SIGTERM', () => {
    void close().finally(() => process.exit(0));
  });
  send({ event: 'ready', readyMs, ...reader.applied() });
  // One command at a time, in order: a measurement never overlaps another.
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() === '') continue;
    const command = JSON.parse(line) as ProbeCommand;
    try {
      switch (command.op) {
        case 'measure':
          send({
            id: command.id,
            result: await measure(
              reader,
              readPools,
              command.kind ?? 'get',
              command.seconds ?? 1,
              command.perCall ?? true,
            ),
          });
          break;
        case 'applied':
          send({ id: command.id, result: reader.applied() });
          break;
        case 'floor':
          send({ id: command.id, result: timerFloor() });
          break;
        case 'close':
          await close();
          send({ id: command.id, result: null });
          return;
      }
    } catch (error) {
      send({ id: command.id, error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    }
  }
  await close();
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(
      `in-process-probe failed: ${error instanceof Error ? (error.stack ?? error.message) : error}\n`,
    );
    process.exit(1);
  },
);
