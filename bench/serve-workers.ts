/**
 * What serving workers (`--serve-workers N`) buy and cost: nodes of this build that differ only in N, loaded
 * with the same keys, all up at once and measured in alternating rounds (the order rotating each round), so a
 * slow minute of a shared host weighs on each alike.
 *
 * Pinning: the nodes are NOT pinned (a node with workers is meant to use every core: "given two cores"), and
 * neither is the throughput generator, h2load (nghttp2's C client, sending prepared gRPC frames over 4
 * connections): it costs a fraction of ghz's CPU per call, so that the node, not the client, sets the pace.
 * h2load counts HTTP/2 answers, not gRPC statuses, so every request kind is first checked with ghz (a
 * gRPC client that reads the status) against every node. The latency points at a fixed rate use ghz (it
 * reports percentiles), pinned to the client core as in the suite.
 *
 *   npm run build && node dist/bench/serve-workers.js [--workers 0,2] [--keys 100000] [--duration 5] [--rounds 6]
 *     [--out bench/results]
 *
 * Writes <out>/serve-workers-<time>.json and .md (the suite's `serve-workers` scenario runs it so).
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { Command } from 'commander';
import { ghzData, keyFor, randomIndexes, valueFor } from './lib/dataset.js';
import { runGhz } from './lib/ghz.js';
import { loadKvs2 } from './lib/loader.js';
import { describeMachine, treeCommit } from './lib/machine.js';
import { cpuSeconds, freePort, run, spawnManaged, stopAll, waitFor } from './lib/processes.js';
import { spread } from './lib/stats.js';
import { REPO_DIR } from './lib/tree.js';
import { isServing } from './systems/grpc-health.js';

const options = new Command('serve-workers')
  .option('--workers <list>', 'values of --serve-workers to compare, comma-separated', '0,2')
  .option('--keys <n>', 'keys loaded into every node', Number, 100_000)
  .option('--duration <s>', 'seconds of one measured run', Number, 5)
  .option('--rounds <n>', 'alternating rounds', Number, 6)
  .option('--value-bytes <n>', 'value size', Number, 100)
  .option('--out <dir>', 'where to write serve-workers-<time>.{json,md}', join(REPO_DIR, 'bench/results'))
  .parse()
  .opts<{ workers: string; keys: number; duration: number; rounds: number; valueBytes: number; out: string }>();

const work = mkdtempSync(join(tmpdir(), 'kvs2-serve-workers-'));

interface Node {
  readonly workers: number;
  readonly target: string;
  readonly pid: number;
}

/** One kind of request, as h2load sends it (a gRPC frame in a file) and as ghz sends it (JSON). */
interface Point {
  readonly name: string;
  readonly method: string;
  readonly frameFile: string;
  readonly ghzFile: string;
  /** h2load connections × streams per connection = calls in flight. */
  readonly connections: number;
  readonly streams: number;
}

interface Throughput {
  readonly callsPerSec: number;
  readonly cpuUsPerCall: number;
  readonly meanMs: number | null;
}

/** A gRPC length-prefixed frame around a message (protobuf fields built by hand: bytes fields only). */
function grpcFrame(message: Buffer): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

function bytesField(tag: number, bytes: Buffer): Buffer {
  const length: number[] = [];
  let n = bytes.length;
  while (n > 0x7f) {
    length.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  length.push(n);
  return Buffer.concat([Buffer.from([(tag << 3) | 2, ...length]), bytes]);
}

function preparePoints(): Point[] {
  const file = (name: string): string => join(work, name);
  const [getKey] = randomIndexes(1, options.keys, 11);
  const multiKeys = randomIndexes(100, options.keys, 12);
  const [setKey] = randomIndexes(1, options.keys, 13);
  writeFileSync(file('get.bin'), grpcFrame(bytesField(1, keyFor(getKey ?? 0))));
  writeFileSync(file('mget.bin'), grpcFrame(Buffer.concat(multiKeys.map((i) => bytesField(1, keyFor(i))))));
  writeFileSync(
    file('set.bin'),
    grpcFrame(
      Buffer.concat([bytesField(1, keyFor(setKey ?? 0)), bytesField(2, valueFor(setKey ?? 0, options.valueBytes))]),
    ),
  );
  ghzData.kvs2Get(file('get.json'), options.keys, 50_000);
  ghzData.kvs2MultiGet(file('mget.json'), options.keys, 2_000, 100);
  ghzData.kvs2Set(file('set.json'), options.keys, 50_000, options.valueBytes);
  return [
    { name: 'Get', method: 'Get', frameFile: file('get.bin'), ghzFile: file('get.json'), connections: 4, streams: 16 },
    {
      name: 'MultiGet of 100',
      method: 'MultiGet',
      frameFile: file('mget.bin'),
      ghzFile: file('mget.json'),
      connections: 4,
      streams: 4,
    },
    { name: 'Set', method: 'Set', frameFile: file('set.bin'), ghzFile: file('set.json'), connections: 4, streams: 16 },
  ];
}

async function startNode(tree: string, workers: number): Promise<Node> {
  const name = `workers-${workers}`;
  const dataDir = join(work, name);
  mkdirSync(dataDir, { recursive: true });
  const target = `127.0.0.1:${await freePort()}`;
  const proc = spawnManaged(
    name,
    process.execPath,
    [
      join(tree, 'bin/kvs2.js'),
      'serve',
      '--listen',
      target,
      '--data-dir',
      dataDir,
      '--log-level',
      'warn',
      '--serve-workers',
      String(workers),
    ],
    { cwd: work, logFile: join(work, `${name}.log`) },
  );
  await waitFor(`${name} to serve`, () => isServing(target, 1_000, credentials.createInsecure()), 60_000, 100);
  const loaded = await loadKvs2(target, options.keys, options.valueBytes, credentials.createInsecure());
  process.stderr.write(`[workers] ${name}: loaded ${options.keys} keys in ${loaded.seconds.toFixed(1)} s\n`);
  return { workers, target, pid: proc.pid };
}

/** ghz reads each call's gRPC status: a request h2load would send must succeed on every node. */
async function checkRequests(node: Node, point: Point): Promise<void> {
  const call = {
    target: node.target,
    proto: join(REPO_DIR, 'proto/kvs2.proto'),
    call: `kvs2.Kvs2/${point.method}`,
    dataFile: point.ghzFile,
  };
  const raw = await runGhz(call, { concurrency: 4, durationSec: 1 }, join(work, `check-${point.method}.json`));
  if (raw.errors > 0 || raw.ops === 0) {
    throw new Error(`${point.name} on --serve-workers ${node.workers}: ${raw.errors} errors (${raw.firstError})`);
  }
}

async function throughput(node: Node, point: Point): Promise<Throughput> {
  const cpuBefore = cpuSeconds(node.pid);
  const result = await run(
    'h2load',
    [
      '-D',
      String(options.duration),
      '-c',
      String(point.connections),
      '-m',
      String(point.streams),
      '-t',
      '1',
      '-d',
      point.frameFile,
      '-H',
      'content-type: application/grpc',
      '-H',
      'te: trailers',
      `http://${node.target}/kvs2.Kvs2/${point.method}`,
    ],
    { timeoutMs: (options.duration + 30) * 1000 },
  );
  const cpu = cpuSeconds(node.pid) - cpuBefore;
  const done = /requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(
    result.stdout,
  );
  const finished = /finished in ([\d.]+)s/.exec(result.stdout);
  const timing = /time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms)/.exec(result.stdout);
  if (done === null || finished === null) throw new Error(`h2load said: ${result.stdout}\n${result.stderr}`);
  const succeeded = Number(done[2]);
  if (Number(done[3]) + Number(done[4]) > 0) throw new Error(`h2load: ${done[0]}`);
  return {
    callsPerSec: succeeded / Number(finished[1]),
    cpuUsPerCall: succeeded > 0 ? (cpu / succeeded) * 1e6 : 0,
    meanMs: timing === null ? null : Number(timing[1]) / (timing[2] === 'us' ? 1000 : 1),
  };
}

async function latencyAt(node: Node, point: Point, rps: number, id: string) {
  const call = {
    target: node.target,
    proto: join(REPO_DIR, 'proto/kvs2.proto'),
    call: `kvs2.Kvs2/${point.method}`,
    dataFile: point.ghzFile,
  };
  const raw = await runGhz(call, { concurrency: 64, rps, durationSec: options.duration }, join(work, `${id}.json`));
  return { p50: raw.latencyMs.p50, p99: raw.latencyMs.p99, p999: raw.latencyMs.p999, errors: raw.errors };
}

const fmt = (n: number | null | undefined, digits = 0): string =>
  n === null || n === undefined ? '–' : n.toLocaleString('en-US', { maximumFractionDigits: digits });

function rotate<T>(items: readonly T[], by: number): T[] {
  return items.map((_, i) => items[(i + by) % items.length] as T);
}

async function main(): Promise<void> {
  // This tree's build is copied first, so that a rebuild during the run cannot change what is measured.
  const tree = join(work, 'tree');
  for (const path of ['package.json', 'bin', 'dist', 'proto', 'src/gen/descriptor-set.binpb']) {
    cpSync(join(REPO_DIR, path), join(tree, path), { recursive: true });
  }
  symlinkSync(join(REPO_DIR, 'node_modules'), join(tree, 'node_modules'), 'dir');
  const points = preparePoints();
  const nodes: Node[] = [];
  for (const workers of options.workers.split(',').map(Number)) nodes.push(await startNode(tree, workers));
  for (const node of nodes) for (const point of points) await checkRequests(node, point);

  const throughputs: Record<string, Record<number, Throughput[]>> = {};
  for (const point of points) {
    const byNode: Record<number, Throughput[]> = {};
    for (const node of nodes) {
      await throughput(node, point); // warm-up
      byNode[node.workers] = [];
    }
    for (let round = 0; round < options.rounds; round++) {
      for (const node of rotate(nodes, round)) {
        const sample = await throughput(node, point);
        byNode[node.workers]?.push(sample);
        process.stderr.write(
          `[workers] ${point.name}, round ${round + 1}, --serve-workers ${node.workers}: ` +
            `${fmt(sample.callsPerSec)}/s, ${fmt(sample.cpuUsPerCall)} µs CPU/call\n`,
        );
      }
    }
    throughputs[point.name] = byNode;
  }

  // Latency at fixed rates: Get at half of the single-threaded node's best rate, MultiGet of 100 at 1,000/s.
  const base = nodes[0] as Node;
  const bestGet = spread((throughputs.Get?.[base.workers] ?? []).map((s) => s.callsPerSec))?.median ?? 1000;
  const ratePoints = [
    { point: points[0] as Point, rps: Math.round(bestGet / 2) },
    { point: points[1] as Point, rps: 1000 },
  ];
  const latencies: Array<{
    name: string;
    rps: number;
    byNode: Record<number, Array<{ p50: number | null; p99: number | null; p999: number | null; errors: number }>>;
  }> = [];
  for (const { point, rps } of ratePoints) {
    const byNode: Record<
      number,
      Array<{ p50: number | null; p99: number | null; p999: number | null; errors: number }>
    > = {};
    for (const node of nodes) byNode[node.workers] = [];
    for (let round = 0; round < Math.max(2, Math.ceil(options.rounds / 2)); round++) {
      for (const node of rotate(nodes, round)) {
        const sample = await latencyAt(node, point, rps, `lat-${point.method}-${node.workers}-${round}`);
        byNode[node.workers]?.push(sample);
        process.stderr.write(
          `[workers] ${point.name} at ${rps}/s, --serve-workers ${node.workers}: p50 ${fmt(sample.p50, 2)} ms, ` +
            `p99 ${fmt(sample.p99, 2)} ms\n`,
        );
      }
    }
    latencies.push({ name: point.name, rps, byNode });
  }

  const report = {
    when: new Date().toISOString(),
    commit: treeCommit(REPO_DIR),
    machine: describeMachine(REPO_DIR),
    options,
    throughputs,
    latencies,
  };
  mkdirSync(options.out, { recursive: true });
  const stem = join(options.out, `serve-workers-${report.when.slice(0, 16).replace(/[:T]/g, '-')}`);
  const out = `${stem}.json`;
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);

  const others = nodes.slice(1);
  const lines = [
    `| Call (h2load, unpinned) | ${nodes.map((n) => `--serve-workers ${n.workers} calls/s`).join(' | ')} | ${others
      .map((n) => `${n.workers} ÷ ${base.workers} (median of rounds, min–max)`)
      .join(' | ')} | CPU µs/call ${nodes.map((n) => n.workers).join(' → ')} |`,
    `| --- | ${nodes.map(() => '---').join(' | ')} | ${others.map(() => '---').join(' | ')} | --- |`,
  ];
  for (const point of points) {
    const byNode = throughputs[point.name] ?? {};
    const medians = nodes.map((n) => spread((byNode[n.workers] ?? []).map((s) => s.callsPerSec))?.median);
    const ratios = others.map((n) => {
      const pairs = (byNode[n.workers] ?? []).map((s, i) => {
        const b = byNode[base.workers]?.[i]?.callsPerSec ?? 0;
        return b > 0 ? s.callsPerSec / b : null;
      });
      const r = spread(pairs);
      return `${fmt(r?.median, 2)} (${fmt(r?.min, 2)}–${fmt(r?.max, 2)})`;
    });
    const cpu = nodes.map((n) => fmt(spread((byNode[n.workers] ?? []).map((s) => s.cpuUsPerCall))?.median)).join(' → ');
    lines.push(
      `| ${point.name}, ${point.connections * point.streams} in flight | ${medians.map((m) => fmt(m)).join(' | ')} | ${ratios.join(' | ')} | ${cpu} |`,
    );
  }
  lines.push(
    '',
    `| Latency at a fixed rate (ghz) | ${nodes.map((n) => `--serve-workers ${n.workers} p50 / p99 / p99.9 ms`).join(' | ')} |`,
  );
  lines.push(`| --- | ${nodes.map(() => '---').join(' | ')} |`);
  for (const latency of latencies) {
    const cells = nodes.map((n) => {
      const samples = latency.byNode[n.workers] ?? [];
      const m = (pick: (s: (typeof samples)[number]) => number | null) => fmt(spread(samples.map(pick))?.median, 2);
      return `${m((s) => s.p50)} / ${m((s) => s.p99)} / ${m((s) => s.p999)}`;
    });
    lines.push(`| ${latency.name} at ${fmt(latency.rps)}/s | ${cells.join(' | ')} |`);
  }
  const heading = [
    `# Serving workers: ${report.when}`,
    '',
    `${options.keys.toLocaleString('en-US')} keys of 16 B with ${options.valueBytes} B values; nodes with --serve-workers ` +
      `${nodes.map((n) => n.workers).join(', ')}, all up, ${options.rounds} alternating rounds of ${options.duration} s. ` +
      `Machine: ${report.machine.cpuModel}, ${report.machine.cores} cores, Node ${report.machine.node}. Tree: ${report.commit}.`,
    '',
  ];
  writeFileSync(`${stem}.md`, `${[...heading, ...lines].join('\n')}\n`);
  process.stdout.write(`${lines.join('\n')}\n\n(${out}, ${stem}.md)\n`);
}

try {
  await main();
} finally {
  await stopAll();
  rmSync(work, { recursive: true, force: true });
}
