/**
 * Where a serving node's memory goes, and what a start-up setting changes of it (issue 16's RSS goal).
 * A store of --keys keys (16-byte keys, 100-byte values) is loaded once, in key order (as a restore or a
 * compaction leaves it); then, for each variant in turn (--rounds times, the order reversed every other
 * round), a real node (pinned to the server core) serves it, a MultiGet sweep reads every key once, the
 * node idles --settle seconds, and its resident memory is broken down from /proc/<pid>/smaps
 * (bench/lib/smaps.ts). With --probe, each node also runs bench/lib/memory-probe.ts (`--import`), which
 * adds V8's heap spaces, code space and the modules loaded by package; RSS comparisons run without it.
 * `--log kafka` serves from a topic of one local broker instead, loaded with kcat while the node runs.
 *
 *   npm run --silent build && node dist/bench/node-memory.js [--keys N] [--settle 12] [--rounds 1] [--probe]
 *     [--log embedded|kafka] [--variant "NAME: ENV=VALUE --node-flag serve:--kvs2-flag=value ..."]...
 *
 * A variant's words: NAME=VALUE is an environment variable, `serve:...` a `kvs2 serve` flag, `tree:DIR`
 * another built kvs2 checkout to run (a before/after of a change, in the same run), anything else a flag
 * of `node` itself. The variant "default" (nothing extra) always runs first. Prints a Markdown
 * table; --out writes the JSON. Run it on an otherwise idle machine.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createEmbeddedLogAt } from '../src/log/embedded/log-at-offset.js';
import { LmdbStore } from '../src/store/lmdb-store.js';
import type { StoreWrite } from '../src/store/store.js';
import { keyFor, valueFor } from './lib/dataset.js';
import { sweepEveryKey } from './lib/key-sweep.js';
import { describeMachine, treeCommit } from './lib/machine.js';
import { sleep, stopAll } from './lib/processes.js';
import { type ResidentBreakdown, residentBreakdown } from './lib/smaps.js';
import { REPO_DIR, snapshotOtherTree, snapshotTree, treePath } from './lib/tree.js';
import { kcatLines, waitUntilApplied } from './phases/kafka.js';
import { createTopic, type KafkaCluster, kafkaUp, kcatProduce } from './systems/kafka.js';
import { startKvs2 } from './systems/kvs2.js';

const VALUE_BYTES = 100;
const LOAD_BATCH = 5_000;
const LOG_IDENTITY = 'embedded:node-memory-bench';

const { values } = parseArgs({
  options: {
    keys: { type: 'string', default: '1000000' },
    settle: { type: 'string', default: '12' },
    rounds: { type: 'string', default: '1' },
    probe: { type: 'boolean', default: false },
    log: { type: 'string', default: 'embedded' },
    variant: { type: 'string', multiple: true, default: [] },
    out: { type: 'string' },
  },
});
const keys = Number(values.keys);
const settleMs = Number(values.settle) * 1000;
const rounds = Number(values.rounds);
if (values.log !== 'embedded' && values.log !== 'kafka') throw new Error('--log: embedded or kafka');
const onKafka = values.log === 'kafka';

interface Variant {
  readonly name: string;
  readonly env: Record<string, string>;
  readonly nodeFlags: string[];
  readonly serveArgs: string[];
  tree?: string;
}

function parseVariant(text: string): Variant {
  const colon = text.indexOf(':');
  if (colon < 1) throw new Error(`--variant "${text}": expected "NAME: words..."`);
  const variant: Variant = { name: text.slice(0, colon).trim(), env: {}, nodeFlags: [], serveArgs: [] };
  for (const word of text
    .slice(colon + 1)
    .trim()
    .split(/\s+/)
    .filter(Boolean)) {
    const env = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(word);
    if (env) variant.env[env[1] as string] = env[2] as string;
    else if (word.startsWith('serve:')) variant.serveArgs.push(...word.slice('serve:'.length).split('='));
    else if (word.startsWith('tree:')) variant.tree = word.slice('tree:'.length);
    else variant.nodeFlags.push(word);
  }
  return variant;
}
const variants = [parseVariant('default:'), ...(values.variant ?? []).map(parseVariant)];

const root = mkdtempSync(join(tmpdir(), 'kvs2-node-memory-'));
const mib = (bytes: number | undefined): string => (bytes === undefined ? '–' : (bytes / 1024 ** 2).toFixed(1));

interface Measured {
  readonly variant: string;
  readonly round: number;
  readonly resident: ResidentBreakdown;
  readonly probe: ProbeReport | null;
  readonly sweepSec: number;
  /** The node's CPU (user + system) over the sweep: what a setting costs the read path. */
  readonly sweepCpuSec: number;
}

interface ProbeReport {
  readonly memoryUsage: NodeJS.MemoryUsage;
  readonly heap: Record<string, number>;
  readonly spaces: Record<string, { physical: number; used: number }>;
  readonly code: Record<string, number>;
  readonly modules: Record<string, number>;
}

async function loadKeyOrderedStore(dataDir: string): Promise<void> {
  const store = LmdbStore.open(join(dataDir, 'store'));
  for (let at = 0; at < keys; at += LOAD_BATCH) {
    const writes: StoreWrite[] = [];
    for (let i = at; i < Math.min(keys, at + LOAD_BATCH); i++) {
      writes.push({ key: keyFor(i), value: valueFor(i, VALUE_BYTES), version: i + 1 });
    }
    await store.apply(writes, new Map([[0, at + writes.length]]), LOG_IDENTITY);
  }
  await store.flushed();
  await store.close();
  await createEmbeddedLogAt(join(dataDir, 'log'), LOG_IDENTITY, keys);
}

async function measure(variant: Variant, round: number, source: string, kafka: KafkaCluster | null): Promise<Measured> {
  const name = `${variant.name}-${round}`;
  const probeFile = join(root, `${name}.probe.json`);
  // Each node maps the one store anew: its pages are in the page cache, but a node's RSS counts only those
  // it touched itself.
  const dataDir = onKafka ? join(root, name) : source;
  const topic = `node-memory-${name}`;
  if (kafka !== null) await createTopic(kafka, topic, 1);
  const node = await startKvs2({
    name,
    dataDir,
    logFile: join(root, `${name}.log`),
    nodeFlags: [
      ...(values.probe ? ['--import', treePath('dist/bench/lib/memory-probe.js')] : []),
      ...variant.nodeFlags,
    ],
    env: { ...variant.env, ...(values.probe ? { KVS2_BENCH_MEMORY_PROBE: probeFile } : {}) },
    serverArgs: variant.serveArgs,
    ...(variant.tree === undefined ? {} : { tree: variant.tree }),
    ...(kafka === null ? {} : { kafka: { brokers: kafka.brokers, topic, extraPids: () => [] } }),
  });
  try {
    if (kafka !== null) {
      await kcatProduce(kafka, topic, kcatLines(keys, VALUE_BYTES));
      await waitUntilApplied(node, keys);
    }
    const cpuBefore = cpuSeconds(node.pid);
    const sweepSec = await sweepEveryKey(node.target, keys, name);
    const sweepCpuSec = cpuSeconds(node.pid) - cpuBefore;
    await sleep(settleMs);
    const resident = residentBreakdown(node.pid);
    const probe = values.probe ? (JSON.parse(readFileSync(probeFile, 'utf8')) as ProbeReport) : null;
    return { variant: variant.name, round, resident, probe, sweepSec, sweepCpuSec };
  } finally {
    await node.stop();
  }
}

/** User plus system CPU of a process so far, from /proc/<pid>/stat (clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

async function main(): Promise<void> {
  const source = join(root, 'store-source');
  let kafka: KafkaCluster | null = null;
  if (onKafka) kafka = await kafkaUp(join(root, 'kafka'));
  else await loadKeyOrderedStore(source);
  const results: Measured[] = [];
  for (let round = 1; round <= rounds; round++) {
    const order = round % 2 === 1 ? variants : [...variants].reverse();
    for (const variant of order) {
      const m = await measure(variant, round, source, kafka);
      results.push(m);
      process.stderr.write(`${m.variant} round ${round}: RSS ${mib(m.resident.rss)} MiB\n`);
    }
  }
  await kafka?.down();

  const columns: Array<[string, (r: ResidentBreakdown) => number]> = [
    ['RSS', (r) => r.rss],
    ['node binary', (r) => r.nodeBinary],
    ['libraries', (r) => r.libraries],
    ['data.mdb', (r) => r.dataMdb],
    ['brk heap', (r) => r.brkHeap],
    ['malloc arenas', (r) => r.mallocArenas],
    ['thread stacks', (r) => r.threadStacks],
    ['other anonymous', (r) => r.otherAnonymous],
  ];
  const lines = [
    `${keys} keys, ${values.log} log, after a MultiGet sweep of every key and ${settleMs / 1000} s idle; MiB, median of ${rounds}`,
    '',
    `| variant | ${columns.map(([c]) => c).join(' | ')} | sweep CPU s (each round) | arenas | threads |`,
    `| --- |${' --- |'.repeat(columns.length + 3)}`,
  ];
  for (const variant of variants) {
    const mine = results.filter((r) => r.variant === variant.name);
    const last = mine[mine.length - 1] as Measured;
    const threads = Object.entries(last.resident.threads)
      .map(([n, c]) => `${n}×${c}`)
      .join(' ');
    lines.push(
      `| ${variant.name} | ${columns.map(([, f]) => mib(median(mine.map((m) => f(m.resident))))).join(' | ')} | ${mine.map((m) => m.sweepCpuSec.toFixed(2)).join(', ')} | ${last.resident.mallocArenaCount} | ${threads} |`,
    );
  }
  if (values.probe) {
    lines.push(
      '',
      '| variant | V8 heap physical | new | old | code | large objects | other spaces | malloced by V8 | external | modules loaded |',
    );
    lines.push(`| --- |${' --- |'.repeat(9)}`);
    for (const m of results) {
      const p = m.probe as ProbeReport;
      const space = (n: string): number => p.spaces[n]?.physical ?? 0;
      const named = ['new_space', 'old_space', 'code_space', 'large_object_space'];
      const others = Object.entries(p.spaces)
        .filter(([n]) => !named.includes(n))
        .reduce((a, [, s]) => a + s.physical, 0);
      const modules = Object.entries(p.modules)
        .sort((a, b) => b[1] - a[1])
        .map(([n, c]) => `${n} ${c}`)
        .join(', ');
      lines.push(
        `| ${m.variant} (${m.round}) | ${mib(p.heap.totalPhysical)} | ${mib(space('new_space'))} | ${mib(space('old_space'))} | ${mib(space('code_space'))} | ${mib(space('large_object_space'))} | ${mib(others)} | ${mib(p.heap.malloced)} | ${mib(p.memoryUsage.external)} | ${modules} |`,
      );
    }
  }
  const report = {
    when: new Date().toISOString(),
    commit: treeCommit(REPO_DIR),
    machine: describeMachine(REPO_DIR),
    keys,
    log: values.log,
    settleSec: settleMs / 1000,
    variants,
    results,
  };
  if (values.out !== undefined) writeFileSync(values.out, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

try {
  snapshotTree(join(root, 'tree'));
  for (const variant of variants) {
    if (variant.tree !== undefined) variant.tree = snapshotOtherTree(variant.tree, join(root, `tree-${variant.name}`));
  }
  await main();
} finally {
  await stopAll();
  rmSync(root, { recursive: true, force: true });
}
