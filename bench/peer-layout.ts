/**
 * What a bootstrap peer's page layout costs a new node (issue 16). A store image keeps the peer's page fill,
 * so a peer that read the topic itself (pages about 2/3 full, as any random-order fill leaves them) sends
 * more than one that was `kvs2 compact`ed. One broker, a topic of --keys records loaded with kcat (as the
 * suite's bootstrap scenario loads it), three peers that read it on the server core: one as usual, one then
 * stopped, `kvs2 compact`ed and started again, one with `--compact-after-bootstrap on` (its own read of the
 * topic is timed: that flag's cost); then --rounds rounds, each a new node bootstrapped from each peer in turn,
 * and one with the flag itself from the first peer (which it rewrites), the order turned every round, on the
 * client core, and kcat reading the topic, as the suite's bootstrap scenario does.
 *
 *   npm run --silent build && node dist/bench/peer-layout.js [--keys 1000000] [--rounds 3]
 *
 * Prints a Markdown table and writes bench/results/peer-layout-<time>.json. Run it on an otherwise idle machine.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { describeMachine, treeCommit } from './lib/machine.js';
import { CLIENT_CORE, stopAll } from './lib/processes.js';
import { median as medianOrNull } from './lib/stats.js';
import { REPO_DIR } from './lib/tree.js';
import { kcatLines, waitUntilApplied } from './phases/kafka.js';
import { createTopic, kafkaUp, kcatConsumeAll, kcatProduce } from './systems/kafka.js';
import { type Kvs2Node, startKvs2 } from './systems/kvs2.js';

const TOPIC = 'kvs2-bench';
const PARTITIONS = 12;
const VALUE_BYTES = 100;
const LAYOUTS = ['random-order', 'compacted', 'compact-after-bootstrap'] as const;
type Layout = (typeof LAYOUTS)[number];
/** What each new node bootstraps from, and whether it runs with --compact-after-bootstrap on itself. */
const CASES: ReadonlyArray<{ readonly name: string; readonly peer: Layout; readonly flag: boolean }> = [
  ...LAYOUTS.map((layout) => ({ name: layout, peer: layout, flag: false })),
  { name: 'random-order, the new node with --compact-after-bootstrap on', peer: 'random-order', flag: true },
];

const { values } = parseArgs({
  options: {
    keys: { type: 'string', default: '1000000' },
    rounds: { type: 'string', default: '3' },
  },
});
const keys = Number(values.keys);
const rounds = Number(values.rounds);
const root = mkdtempSync(join(tmpdir(), 'kvs2-peer-layout-'));
/** The median of a non-empty list (every list here has one entry a round). */
const median = (values: readonly number[]): number => medianOrNull(values) ?? Number.NaN;
const mib = (bytes: number): string => (bytes / 1024 ** 2).toFixed(1);
const dataMdbBytes = (dataDir: string): number => statSync(join(dataDir, 'store', 'data.mdb')).size;

interface Bootstrap {
  readonly servingSec: number;
  readonly imageBytes: number;
  readonly firstByteMs: number;
  readonly askedToInstalledMs: number;
  readonly dataMdbBytes: number;
}

/** The new node's `bootstrapped from peer` line: the image's size and the time from asking to installed. */
function bootstrapLine(logFile: string): { bytes: number; firstByteMs: number; tookMs: number } {
  for (const line of readFileSync(logFile, 'utf8').split('\n')) {
    if (!line.includes('bootstrapped from peer')) continue;
    const entry = JSON.parse(line) as { bytes?: unknown; firstByteMs?: unknown; tookMs?: unknown };
    if (typeof entry.bytes === 'number' && typeof entry.firstByteMs === 'number' && typeof entry.tookMs === 'number') {
      return { bytes: entry.bytes, firstByteMs: entry.firstByteMs, tookMs: entry.tookMs };
    }
  }
  throw new Error(`${logFile}: no "bootstrapped from peer" line (the node read the topic instead)`);
}

const kafka = await kafkaUp(join(root, 'kafka'));
try {
  const target = { brokers: kafka.brokers, topic: TOPIC, extraPids: () => kafka.brokerPids() };
  await createTopic(kafka, TOPIC, PARTITIONS);
  await kcatProduce(kafka, TOPIC, kcatLines(keys, VALUE_BYTES));
  const peers = new Map<Layout, Kvs2Node>();
  const peerBytes = new Map<Layout, number>();
  /** Each peer's own start on the topic, spawn -> SERVING (all of it read by then). */
  const peerServingSec = new Map<Layout, number>();
  let compactSec = 0;
  for (const layout of LAYOUTS) {
    const dataDir = join(root, `peer-${layout}`);
    const start = (suffix: string) =>
      startKvs2({
        name: `peer-${layout}`,
        dataDir,
        logFile: join(root, `peer-${layout}${suffix}.log`),
        kafka: target,
        serverArgs: layout === 'compact-after-bootstrap' ? ['--compact-after-bootstrap', 'on'] : [],
      });
    let peer = await start('');
    await waitUntilApplied(peer, keys);
    peerServingSec.set(layout, peer.startup.servingMs / 1000);
    if (layout === 'compacted') {
      await peer.stop();
      const started = performance.now();
      execFileSync(process.execPath, [join(REPO_DIR, 'bin/kvs2.js'), 'compact', '--data-dir', dataDir]);
      compactSec = (performance.now() - started) / 1000;
      peer = await start('-compacted');
    }
    peers.set(layout, peer);
    peerBytes.set(layout, dataMdbBytes(dataDir));
  }
  const runs = new Map<string, Bootstrap[]>(CASES.map((run) => [run.name, []]));
  const kcatSec: number[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const [index, run] of CASES.map((_, i) => [i, CASES[(i + round) % CASES.length]] as const)) {
      if (run === undefined) continue;
      const name = `new-${index}-${round}`;
      const dataDir = join(root, name);
      const logFile = join(root, `${name}.log`);
      const node = await startKvs2({
        name,
        dataDir,
        logFile,
        kafka: target,
        core: CLIENT_CORE,
        serverArgs: [
          '--bootstrap-from',
          (peers.get(run.peer) as Kvs2Node).target,
          ...(run.flag ? ['--compact-after-bootstrap', 'on'] : []),
        ],
      });
      await node.stop();
      const line = bootstrapLine(logFile);
      runs.get(run.name)?.push({
        servingSec: node.startup.servingMs / 1000,
        imageBytes: line.bytes,
        firstByteMs: line.firstByteMs,
        askedToInstalledMs: line.tookMs,
        dataMdbBytes: dataMdbBytes(dataDir),
      });
      rmSync(dataDir, { recursive: true, force: true });
    }
    const read = await kcatConsumeAll(kafka, TOPIC);
    if (read.records !== keys) throw new Error(`kcat read ${read.records} records, not ${keys}`);
    kcatSec.push(read.seconds);
  }
  for (const peer of peers.values()) await peer.stop();

  const kcat = median(kcatSec);
  const report = {
    when: new Date().toISOString(),
    commit: treeCommit(REPO_DIR),
    machine: describeMachine(REPO_DIR),
    keys,
    valueBytes: VALUE_BYTES,
    compactSec,
    kcatSec,
    peers: Object.fromEntries(
      LAYOUTS.map((layout) => [
        layout,
        { dataMdbBytes: peerBytes.get(layout), servingSec: peerServingSec.get(layout) },
      ]),
    ),
    bootstraps: Object.fromEntries(runs),
  };
  const out = join(REPO_DIR, 'bench/results', `peer-layout-${report.when.slice(0, 16).replace(/[:T]/g, '-')}.json`);
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  const lines = [
    `${keys} records of 16-byte keys and ${VALUE_BYTES}-byte values on ${PARTITIONS} partitions; ${rounds} rounds; the peer's compaction took ${compactSec.toFixed(2)} s`,
    '',
    "| peer's store (new node) | peer's own start on the topic, s | peer data.mdb MiB | image MiB | spawn → SERVING s, median (each) | asked → installed ms | new node's data.mdb MiB | ÷ kcat |",
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...CASES.map((run) => {
      const each = runs.get(run.name) ?? [];
      const serving = median(each.map((one) => one.servingSec));
      return `| ${run.name} | ${(peerServingSec.get(run.peer) ?? 0).toFixed(2)} | ${mib(peerBytes.get(run.peer) ?? 0)} | ${mib(each[0]?.imageBytes ?? 0)} | ${serving.toFixed(2)} (${each.map((one) => one.servingSec.toFixed(2)).join(', ')}) | ${median(each.map((one) => one.askedToInstalledMs)).toFixed(0)} | ${mib(each[0]?.dataMdbBytes ?? 0)} | ${(kcat / serving).toFixed(2)}× |`;
    }),
    '',
    `kcat -C -e -o beginning: ${kcat.toFixed(2)} s median (${kcatSec.map((s) => s.toFixed(2)).join(', ')})`,
    '',
    `(${out})`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  await kafka.down();
  await stopAll();
  rmSync(root, { recursive: true, force: true });
}
