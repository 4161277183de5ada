/**
 * What Node's garbage-collector settings do to a node's tail: nodes of this build that differ only in the
 * Node flags they start with, loaded with the same keys, all up at once on the server core (one measured while
 * the others idle), measured in alternating rounds (the order rotating each round): best `Get` calls/s at 64
 * in flight (closed loop), then `Get` p99 at a fixed rate and `MultiGet` of 100 p99 at 1,000 calls/s, the
 * suite's two latency targets, and what they cost elsewhere: `Get` at 1 in flight and `Set` at 64 (embedded
 * log), with ghz pinned to the client core as in the suite.
 *
 * A variant is `NAME: FLAGS` (Node flags, space-separated; none: what `kvs2 serve` chooses itself,
 * src/cli/runtime-settings.ts). An operator's flag wins over kvs2's, so `--max-semi-space-size=16
 * --no-single-threaded-gc` is V8's own sizes (16 MiB is the most V8 grows a semi-space to by itself here).
 *
 *   npm run build && node dist/bench/gc-settings.js [--variant "kvs2:"] [--variant "v8: --max-semi-space-size=16
 *     --no-single-threaded-gc"] [--keys 100000] [--get-rate 8000] [--duration 6] [--rounds 3] [--out bench/results]
 *
 * Writes <out>/gc-settings-<time>.json and .md.
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { Command } from 'commander';
import { ghzData } from './lib/dataset.js';
import { runGhz } from './lib/ghz.js';
import { loadKvs2 } from './lib/loader.js';
import { describeMachine, treeCommit } from './lib/machine.js';
import {
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

const DEFAULT_VARIANTS = ['kvs2:', 'v8: --max-semi-space-size=16 --no-single-threaded-gc'];

const options = new Command('gc-settings')
  .option('--variant <name: flags>', 'a node started with these Node flags (repeatable)', collect, [])
  .option('--keys <n>', 'keys loaded into every node', Number, 100_000)
  .option('--get-rate <n>', 'fixed rate of the Get latency point, calls/s', Number, 8_000)
  .option('--duration <s>', 'seconds of one measured run', Number, 6)
  .option('--rounds <n>', 'alternating rounds', Number, 3)
  .option('--out <dir>', 'where to write gc-settings-<time>.{json,md}', join(REPO_DIR, 'bench/results'))
  .parse()
  .opts<{ variant: string[]; keys: number; getRate: number; duration: number; rounds: number; out: string }>();

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

interface Variant {
  readonly name: string;
  readonly flags: readonly string[];
}

interface Node extends Variant {
  readonly target: string;
  readonly pid: number;
  readonly process: ManagedProcess;
}

interface RoundResult {
  readonly getAtOnePerSec: number;
  readonly bestGetPerSec: number;
  readonly setPerSec: number;
  readonly cpuUsPerSet: number;
  readonly cpuUsPerGet: number;
  readonly getP50: number | null;
  readonly getP99: number | null;
  readonly multiGetP50: number | null;
  readonly multiGetP99: number | null;
  readonly errors: number;
}

const work = mkdtempSync(join(tmpdir(), 'kvs2-gc-settings-'));

function parseVariant(text: string): Variant {
  const colon = text.indexOf(':');
  if (colon <= 0) throw new Error(`--variant "${text}": expected NAME: FLAGS`);
  return {
    name: text.slice(0, colon).trim(),
    flags: text
      .slice(colon + 1)
      .split(/\s+/)
      .filter(Boolean),
  };
}

async function startNode(tree: string, variant: Variant, dataDir: string): Promise<Node> {
  const target = `127.0.0.1:${await freePort()}`;
  const proc = spawnManaged(
    variant.name,
    process.execPath,
    [
      ...variant.flags,
      join(tree, 'bin/kvs2.js'),
      'serve',
      '--listen',
      target,
      '--data-dir',
      dataDir,
      '--log-level',
      'warn',
    ],
    { cwd: work, core: SERVER_CORE, logFile: join(work, `${variant.name}.log`) },
  );
  await waitFor(`${variant.name} to serve`, () => isServing(target, 1_000, credentials.createInsecure()), 60_000, 100);
  return { ...variant, target, pid: proc.pid, process: proc };
}

function call(node: Node, method: string, dataFile: string) {
  return { target: node.target, proto: join(REPO_DIR, 'proto/kvs2.proto'), call: `kvs2.Kvs2/${method}`, dataFile };
}

async function measure(node: Node, id: string): Promise<RoundResult> {
  const get = join(work, 'get.json');
  const multiGet = join(work, 'mget.json');
  const single = await runGhz(
    call(node, 'Get', get),
    { concurrency: 1, durationSec: options.duration },
    join(work, `${id}-1.json`),
  );
  const cpuBefore = cpuSeconds(node.pid);
  const best = await runGhz(
    call(node, 'Get', get),
    { concurrency: 64, durationSec: options.duration },
    join(work, `${id}-b.json`),
  );
  const cpu = cpuSeconds(node.pid) - cpuBefore;
  const fixed = await runGhz(
    call(node, 'Get', get),
    { concurrency: 64, rps: options.getRate, durationSec: options.duration },
    join(work, `${id}-g.json`),
  );
  const batches = await runGhz(
    call(node, 'MultiGet', multiGet),
    { concurrency: 64, rps: 1_000, durationSec: options.duration },
    join(work, `${id}-m.json`),
  );
  const setCpuBefore = cpuSeconds(node.pid);
  const sets = await runGhz(
    call(node, 'Set', join(work, 'set.json')),
    { concurrency: 64, durationSec: options.duration },
    join(work, `${id}-s.json`),
  );
  const setCpu = cpuSeconds(node.pid) - setCpuBefore;
  return {
    getAtOnePerSec: single.ops / single.seconds,
    bestGetPerSec: best.ops / best.seconds,
    setPerSec: sets.ops / sets.seconds,
    cpuUsPerSet: sets.ops > 0 ? (setCpu / sets.ops) * 1e6 : 0,
    cpuUsPerGet: best.ops > 0 ? (cpu / best.ops) * 1e6 : 0,
    getP50: fixed.latencyMs.p50,
    getP99: fixed.latencyMs.p99,
    multiGetP50: batches.latencyMs.p50,
    multiGetP99: batches.latencyMs.p99,
    errors: single.errors + best.errors + fixed.errors + batches.errors + sets.errors,
  };
}

const fmt = (n: number | null | undefined, digits = 0): string =>
  n === null || n === undefined ? '–' : n.toLocaleString('en-US', { maximumFractionDigits: digits });

function cell(samples: readonly RoundResult[], pick: (r: RoundResult) => number | null, digits: number): string {
  const s = spread(samples.map(pick));
  return s === null ? '–' : `${fmt(s.median, digits)} (${fmt(s.min, digits)}–${fmt(s.max, digits)})`;
}

async function main(): Promise<void> {
  const variants = (options.variant.length > 0 ? options.variant : DEFAULT_VARIANTS).map(parseVariant);
  // This tree's build is copied first, so that a rebuild during the run cannot change what is measured.
  const tree = join(work, 'tree');
  for (const path of ['package.json', 'bin', 'dist', 'proto', 'src/gen/descriptor-set.binpb']) {
    cpSync(join(REPO_DIR, path), join(tree, path), { recursive: true });
  }
  symlinkSync(join(REPO_DIR, 'node_modules'), join(tree, 'node_modules'), 'dir');
  ghzData.kvs2Get(join(work, 'get.json'), options.keys, 50_000);
  ghzData.kvs2MultiGet(join(work, 'mget.json'), options.keys, 2_000, 100);
  ghzData.kvs2Set(join(work, 'set.json'), options.keys, 50_000, 100);

  // One store, loaded once and copied: every node serves the same file.
  const seed = join(work, 'seed');
  const loader = await startNode(tree, { name: 'loader', flags: [] }, seed);
  const loaded = await loadKvs2(loader.target, options.keys, 100, credentials.createInsecure());
  process.stderr.write(`[gc] loaded ${options.keys} keys in ${loaded.seconds.toFixed(1)} s\n`);
  await loader.process.stop();
  const nodes: Node[] = [];
  for (const variant of variants) {
    const dataDir = join(work, `data-${nodes.length}`);
    cpSync(seed, dataDir, { recursive: true });
    nodes.push(await startNode(tree, variant, dataDir));
  }

  const results = new Map<string, RoundResult[]>(nodes.map((n) => [n.name, []]));
  for (const node of nodes) await measure(node, `warm-${node.name}`);
  for (let round = 0; round < options.rounds; round++) {
    for (let i = 0; i < nodes.length; i++) {
      const node = nodes[(i + round) % nodes.length] as Node;
      const result = await measure(node, `r${round}-${node.name}`);
      results.get(node.name)?.push(result);
      process.stderr.write(
        `[gc] round ${round + 1}, ${node.name}: best Get ${fmt(result.bestGetPerSec)}/s, Get p99 at ` +
          `${options.getRate}/s ${fmt(result.getP99, 2)} ms, MultiGet p99 at 1,000/s ${fmt(result.multiGetP99, 2)} ms\n`,
      );
    }
  }

  const report = {
    when: new Date().toISOString(),
    commit: treeCommit(REPO_DIR),
    machine: describeMachine(REPO_DIR),
    options,
    variants,
    results: Object.fromEntries(results),
  };
  mkdirSync(options.out, { recursive: true });
  const stem = join(options.out, `gc-settings-${report.when.slice(0, 16).replace(/[:T]/g, '-')}`);
  writeFileSync(`${stem}.json`, `${JSON.stringify(report, null, 2)}\n`);
  const lines = [
    `| Node flags | Get/s, 1 in flight | Get/s, 64 in flight | CPU µs per Get | Get at ${fmt(options.getRate)}/s: p50 / p99 ms | MultiGet of 100 at 1,000/s: p50 / p99 ms | Set/s, 64 in flight | CPU µs per Set | errors |`,
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...nodes.map((node) => {
      const samples = results.get(node.name) ?? [];
      const flags = node.flags.length > 0 ? `\`${node.flags.join(' ')}\`` : "kvs2's own";
      return (
        `| ${node.name}: ${flags} | ${cell(samples, (r) => r.getAtOnePerSec, 0)} | ${cell(samples, (r) => r.bestGetPerSec, 0)} | ${cell(samples, (r) => r.cpuUsPerGet, 0)} | ` +
        `${cell(samples, (r) => r.getP50, 2)} / ${cell(samples, (r) => r.getP99, 2)} | ` +
        `${cell(samples, (r) => r.multiGetP50, 2)} / ${cell(samples, (r) => r.multiGetP99, 2)} | ` +
        `${cell(samples, (r) => r.setPerSec, 0)} | ${cell(samples, (r) => r.cpuUsPerSet, 0)} | ` +
        `${samples.reduce((sum, r) => sum + r.errors, 0)} |`
      );
    }),
  ];
  const heading = [
    `# GC settings: ${report.when}`,
    '',
    `${options.keys.toLocaleString('en-US')} keys of 16 B with 100 B values; ${nodes.length} nodes pinned to core ` +
      `${SERVER_CORE}, ghz on the other; ${options.rounds} alternating rounds of ${options.duration} s a point, ` +
      `median (min–max). Machine: ${report.machine.cpuModel}, ${report.machine.cores} cores, Node ` +
      `${report.machine.node}. Tree: ${report.commit}.`,
    '',
  ];
  writeFileSync(`${stem}.md`, `${[...heading, ...lines].join('\n')}\n`);
  process.stdout.write(`${lines.join('\n')}\n\n(${stem}.json, ${stem}.md)\n`);
}

try {
  await main();
} finally {
  await stopAll();
  rmSync(work, { recursive: true, force: true });
}
