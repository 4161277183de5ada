/**
 * What a running snapshot costs a node's reads: `Get` at a steady closed-loop load on one node (embedded
 * log, N keys), in alternating rounds without a snapshot and with snapshots streaming throughout the run (a
 * new one asked for as soon as one ends: bench/snapshot-stream.ts, kvs2's client on the Snapshot RPC, chunks
 * to /dev/null or --sink), the order swapping each round; the ratio is taken round by round. The node runs
 * pinned to the server core, ghz and the snapshot client on the client core (a snapshot is streamed to a
 * client, which must run somewhere: not on the server's core).
 *
 *   npm run build && node dist/bench/snapshot-get.js [--keys 1000000] [--duration 10] [--rounds 6]
 *     [--concurrency 64] [--sink /dev/null]
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { ghzData } from './lib/dataset.js';
import { runGhz } from './lib/ghz.js';
import { loadKvs2 } from './lib/loader.js';
import { describeMachine, treeCommit } from './lib/machine.js';
import {
  CLIENT_CORE,
  coreBusyPercent,
  coreTimes,
  cpuSeconds,
  freePort,
  type ManagedProcess,
  SERVER_CORE,
  spawnManaged,
  stopAll,
  waitFor,
} from './lib/processes.js';
import { spread } from './lib/stats.js';
import { REPO_DIR } from './lib/tree.js';
import { isServing } from './systems/grpc-health.js';

const options = new Command('snapshot-get')
  .option('--keys <n>', 'keys loaded into the node', Number, 1_000_000)
  .option('--duration <s>', 'seconds of one measured run', Number, 10)
  .option('--rounds <n>', 'alternating rounds', Number, 6)
  .option('--concurrency <n>', 'Get calls in flight', Number, 64)
  .option('--value-bytes <n>', 'value size', Number, 100)
  .option('--sink <file>', 'where the snapshot client writes each snapshot (truncated each time)', '/dev/null')
  .option('--max-bytes-per-second <n>', "the snapshot's pace asked of the node (0: unpaced)", Number, 0)
  .parse()
  .opts<{
    keys: number;
    duration: number;
    rounds: number;
    concurrency: number;
    valueBytes: number;
    sink: string;
    maxBytesPerSecond: number;
  }>();

const work = mkdtempSync(join(tmpdir(), 'kvs2-snapshot-get-'));
const getData = join(work, 'get.json');

interface Sample {
  readonly callsPerSec: number;
  readonly errors: number;
  /** The node's CPU per successful Get, snapshot work included. */
  readonly cpuUsPerCall: number;
  readonly p50: number | null;
  readonly p99: number | null;
  /** Busy % of each core during the run: the client core holds ghz and the snapshot client. */
  readonly coreBusyPercent: number[];
  /** Whole snapshots that arrived during the run, and the MiB/s they streamed (0 without). */
  readonly snapshots: number;
  readonly snapshotMiBPerSec: number;
}

interface Node {
  readonly target: string;
  readonly pid: number;
}

/** The snapshot client, started before the run and stopped after it: a snapshot covers the whole window. */
class SnapshotStreams {
  readonly #process: ManagedProcess;
  readonly #arrivals: Array<{ at: number; bytes: number }> = [];
  #streaming = false;

  private constructor(tree: string, target: string, id: string) {
    this.#process = spawnManaged(
      'snapshot-stream',
      process.execPath,
      [
        join(tree, 'dist/bench/snapshot-stream.js'),
        target,
        '--sink',
        options.sink,
        '--max-bytes-per-second',
        String(options.maxBytesPerSecond),
      ],
      {
        core: CLIENT_CORE,
        cwd: work,
        logFile: join(work, `snapshot-stream-${id}.log`),
        onLine: (line) => {
          const event = JSON.parse(line) as { event: string; bytes?: number };
          if (event.event === 'streaming') this.#streaming = true;
          if (event.event === 'snapshot') this.#arrivals.push({ at: performance.now(), bytes: event.bytes ?? 0 });
        },
      },
    );
  }

  /** Started, and its first snapshot streaming. */
  static async start(tree: string, target: string, id: string): Promise<SnapshotStreams> {
    const streams = new SnapshotStreams(tree, target, id);
    await waitFor(
      'the snapshot client to receive its first chunk',
      () => {
        if (!streams.#process.running)
          throw new Error(`the snapshot client exited; see ${work}/snapshot-stream-${id}.log`);
        return streams.#streaming;
      },
      60_000,
      20,
    );
    return streams;
  }

  /** Whole snapshots that arrived between `from` and `to` (performance.now() times). */
  arrivedBetween(from: number, to: number): Array<{ bytes: number }> {
    return this.#arrivals.filter((a) => a.at >= from && a.at <= to);
  }

  /** Stops it; throws if it had stopped by itself (a failed stream) before the run ended. */
  async stop(): Promise<void> {
    if (!this.#process.running) throw new Error('the snapshot client stopped during the run (a stream failed)');
    await this.#process.stop();
  }
}

async function startNode(tree: string): Promise<Node> {
  const dataDir = join(work, 'node');
  mkdirSync(dataDir, { recursive: true });
  const target = `127.0.0.1:${await freePort()}`;
  const proc = spawnManaged(
    'kvs2',
    process.execPath,
    [join(tree, 'bin/kvs2.js'), 'serve', '--listen', target, '--data-dir', dataDir, '--log-level', 'warn'],
    { core: SERVER_CORE, cwd: work, logFile: join(work, 'kvs2.log') },
  );
  await waitFor('kvs2 to serve', () => isServing(target, 1_000), 60_000, 100);
  const loaded = await loadKvs2(target, options.keys, options.valueBytes);
  process.stderr.write(`[snapshot-get] loaded ${options.keys} keys in ${loaded.seconds.toFixed(1)} s\n`);
  return { target, pid: proc.pid };
}

async function measure(tree: string, node: Node, withSnapshot: boolean, id: string): Promise<Sample> {
  const streams = withSnapshot ? await SnapshotStreams.start(tree, node.target, id) : null;
  const call = {
    target: node.target,
    proto: join(REPO_DIR, 'proto/kvs2.proto'),
    call: 'kvs2.Kvs2/Get',
    dataFile: getData,
  };
  const cpuBefore = cpuSeconds(node.pid);
  const coresBefore = coreTimes();
  const from = performance.now();
  const raw = await runGhz(
    call,
    { concurrency: options.concurrency, durationSec: options.duration },
    join(work, `${id}.json`),
  );
  const to = performance.now();
  const coresAfter = coreTimes();
  const cpu = cpuSeconds(node.pid) - cpuBefore;
  const arrived = streams?.arrivedBetween(from, to) ?? [];
  await streams?.stop();
  return {
    callsPerSec: raw.seconds > 0 ? raw.ops / raw.seconds : 0,
    errors: raw.errors,
    cpuUsPerCall: raw.ops > 0 ? (cpu / raw.ops) * 1e6 : 0,
    p50: raw.latencyMs.p50,
    p99: raw.latencyMs.p99,
    coreBusyPercent: coreBusyPercent(coresBefore, coresAfter),
    snapshots: arrived.length,
    snapshotMiBPerSec: arrived.reduce((sum, a) => sum + a.bytes, 0) / 1024 ** 2 / ((to - from) / 1000),
  };
}

const fmt = (n: number | null | undefined, digits = 0): string =>
  n === null || n === undefined ? '–' : n.toLocaleString('en-US', { maximumFractionDigits: digits });
const range = (s: { median: number; min: number; max: number } | null, digits = 0): string =>
  s === null ? '–' : `${fmt(s.median, digits)} (${fmt(s.min, digits)}–${fmt(s.max, digits)})`;

function summary(samples: readonly Sample[]) {
  return {
    callsPerSec: spread(samples.map((s) => s.callsPerSec)),
    cpuUsPerCall: spread(samples.map((s) => s.cpuUsPerCall)),
    p50: spread(samples.map((s) => s.p50)),
    p99: spread(samples.map((s) => s.p99)),
    snapshots: spread(samples.map((s) => s.snapshots)),
    snapshotMiBPerSec: spread(samples.map((s) => s.snapshotMiBPerSec)),
    errors: samples.reduce((sum, s) => sum + s.errors, 0),
  };
}

async function main(): Promise<void> {
  // This tree's build is copied first, so that a rebuild during the run cannot change what is measured.
  const tree = join(work, 'tree');
  for (const path of ['package.json', 'bin', 'dist', 'proto', 'src/gen/descriptor-set.binpb']) {
    cpSync(join(REPO_DIR, path), join(tree, path), { recursive: true });
  }
  symlinkSync(join(REPO_DIR, 'node_modules'), join(tree, 'node_modules'), 'dir');
  ghzData.kvs2Get(getData, options.keys, 50_000);
  const node = await startNode(tree);
  await measure(tree, node, false, 'warmup-without');
  await measure(tree, node, true, 'warmup-with');
  const rounds: Array<{ without: Sample; with: Sample }> = [];
  for (let round = 0; round < options.rounds; round++) {
    const snapshotFirst = round % 2 === 1;
    const first = await measure(tree, node, snapshotFirst, `${round}-a`);
    const second = await measure(tree, node, !snapshotFirst, `${round}-b`);
    const pair = snapshotFirst ? { without: second, with: first } : { without: first, with: second };
    rounds.push(pair);
    process.stderr.write(
      `[snapshot-get] round ${round + 1}: without ${fmt(pair.without.callsPerSec)}/s, under a snapshot ` +
        `${fmt(pair.with.callsPerSec)}/s (${pair.with.snapshots} snapshots, ${fmt(pair.with.snapshotMiBPerSec, 1)} MiB/s), ` +
        `ratio ${fmt(pair.with.callsPerSec / pair.without.callsPerSec, 3)}; cores busy ` +
        `${pair.without.coreBusyPercent.join('/')} → ${pair.with.coreBusyPercent.join('/')} %\n`,
    );
  }
  const ratio = spread(
    rounds.map((r) => (r.without.callsPerSec > 0 ? r.with.callsPerSec / r.without.callsPerSec : null)),
  );
  const report = {
    when: new Date().toISOString(),
    commit: treeCommit(REPO_DIR),
    machine: describeMachine(REPO_DIR),
    options,
    placement: {
      node: `core ${SERVER_CORE}`,
      ghz: `core ${CLIENT_CORE}`,
      snapshotClient: `core ${CLIENT_CORE} (with ghz), chunks to ${options.sink}, paced at ${options.maxBytesPerSecond} bytes/s (0: unpaced)`,
    },
    without: summary(rounds.map((r) => r.without)),
    withSnapshot: summary(rounds.map((r) => r.with)),
    ratio,
    goalMet: ratio === null ? null : ratio.median >= 0.8,
    rounds,
  };
  const out = join(REPO_DIR, 'bench/results', `snapshot-get-${report.when.slice(0, 16).replace(/[:T]/g, '-')}.json`);
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  const w = report.without;
  const s = report.withSnapshot;
  const busy = (pick: (r: { without: Sample; with: Sample }) => Sample, core: number) =>
    range(spread(rounds.map((r) => pick(r).coreBusyPercent[core] ?? null)));
  const lines = [
    `Get at ${options.concurrency} in flight on one node (embedded log) of ${fmt(options.keys)} keys with ` +
      `${options.valueBytes} B values; snapshots paced at ${options.maxBytesPerSecond > 0 ? `${(options.maxBytesPerSecond / 1024 ** 2).toFixed(1)} MiB/s` : 'no limit'}; ${options.rounds} rounds of ${options.duration} s each way, the order ` +
      `swapping each round. Node on core ${SERVER_CORE}; ghz and the snapshot client on core ${CLIENT_CORE}.`,
    '',
    '| | Get calls/s median (min–max) | node CPU µs/call | p50 ms | p99 ms | snapshots per run | snapshot MiB/s | server core busy % | client core busy % | errors |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    `| no snapshot | ${range(w.callsPerSec)} | ${fmt(w.cpuUsPerCall?.median)} | ${fmt(w.p50?.median, 3)} | ${fmt(w.p99?.median, 2)} | – | – | ${busy((r) => r.without, SERVER_CORE)} | ${busy((r) => r.without, CLIENT_CORE)} | ${w.errors} |`,
    `| snapshots streaming throughout | ${range(s.callsPerSec)} | ${fmt(s.cpuUsPerCall?.median)} | ${fmt(s.p50?.median, 3)} | ${fmt(s.p99?.median, 2)} | ${range(s.snapshots)} | ${range(s.snapshotMiBPerSec, 1)} | ${busy((r) => r.with, SERVER_CORE)} | ${busy((r) => r.with, CLIENT_CORE)} | ${s.errors} |`,
    '',
    `Under a snapshot ÷ without, round by round: ${range(ratio, 3)} ` +
      `(goal ≥ 0.8: ${report.goalMet === null ? '–' : report.goalMet ? 'met' : 'not met'}).`,
    '',
    '| Round | without calls/s | under a snapshot calls/s | ratio |',
    '| --- | --- | --- | --- |',
    ...rounds.map(
      (r, i) =>
        `| ${i + 1} | ${fmt(r.without.callsPerSec)} | ${fmt(r.with.callsPerSec)} | ${fmt(r.with.callsPerSec / r.without.callsPerSec, 3)} |`,
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n\n(${out})\n`);
}

try {
  await main();
} finally {
  await stopAll();
  rmSync(work, { recursive: true, force: true });
}
