/**
 * What a snapshot restore and `kvs2 compact` give back of a store filled in random key order (as a
 * bootstrap from Kafka fills it: partitions hash the keys), and what they cost: data.mdb of the random
 * store, of the store restored from its snapshot, of the store compacted in place and of one loaded in key
 * order (raw key and value bytes plus LMDB's per-record overhead, the floor), with the time of each step on
 * this machine. Then memory: a real node (pinned to the server core) serving the random store and one
 * serving the restored store, each after a MultiGet sweep that reads every key once (VmRSS, anonymous and
 * file-backed), beside a redis-server loaded with the same keys. Keys and values as the benchmark suite's
 * (16-byte keys, 100-byte values).
 *
 *   npm run --silent build && node dist/bench/snapshot-size.js [--keys N] [--settle 12]
 *
 * Prints a Markdown table and writes bench/results/snapshot-size-<time>.json. Run it on an otherwise idle machine.
 */
import { createReadStream, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { writeOutput } from '../src/cli/commands/snapshot-files.js';
import { createEmbeddedLogAt } from '../src/log/embedded/log-at-offset.js';
import { compactDataDir, snapshotDataDir } from '../src/snapshot/data-dir-snapshot.js';
import { installSnapshot } from '../src/snapshot/snapshot-install.js';
import { LmdbStore } from '../src/store/lmdb-store.js';
import type { StoreWrite } from '../src/store/store.js';
import { keyFor, seededRandom, valueFor } from './lib/dataset.js';
import { sweepEveryKey } from './lib/key-sweep.js';
import { loadRedis } from './lib/loader.js';
import { describeMachine, treeCommit } from './lib/machine.js';
import { rssBytes, rssParts, sleep, stopAll } from './lib/processes.js';
import { REPO_DIR, snapshotTree } from './lib/tree.js';
import { startKvs2 } from './systems/kvs2.js';
import { redisInfoMemory, startRedis } from './systems/redis.js';

const VALUE_BYTES = 100;
/** Records per store transaction, as the replica applies a fetched batch. */
const LOAD_BATCH = 5_000;
/** The log identity the bench stores are written with; their nodes get an embedded log of it. */
const LOG_IDENTITY = 'embedded:snapshot-size-bench';
/** Keys per MultiGet of the warm read, and calls in flight. */

const { values } = parseArgs({
  options: {
    keys: { type: 'string', default: '1000000' },
    // As the suite's memory scenario: a node gives back the heap a burst grew once it has been idle a while.
    settle: { type: 'string', default: '12' },
  },
});
const keys = Number(values.keys);
const settleMs = Number(values.settle) * 1000;
const root = mkdtempSync(join(tmpdir(), 'kvs2-snapshot-size-'));
const mib = (bytes: number | null): string => (bytes === null ? '–' : (bytes / 1024 ** 2).toFixed(1));
const seconds = (since: number): number => (performance.now() - since) / 1000;
const dataFile = (dataDir: string): number => statSync(join(dataDir, 'store', 'data.mdb')).size;

/** A store of every key written by LmdbStore.apply in batches, in the given order of key indexes. */
async function loadStore(dataDir: string, order: readonly number[]): Promise<number> {
  const started = performance.now();
  const store = LmdbStore.open(join(dataDir, 'store'));
  for (let at = 0; at < order.length; at += LOAD_BATCH) {
    const writes: StoreWrite[] = order
      .slice(at, at + LOAD_BATCH)
      .map((i, n) => ({ key: keyFor(i), value: valueFor(i, VALUE_BYTES), version: at + n + 1 }));
    await store.apply(writes, new Map([[0, at + writes.length]]), LOG_IDENTITY);
  }
  await store.flushed();
  await store.close();
  return seconds(started);
}

interface NodeMemory {
  readonly rssBytes: number | null;
  readonly rssAnonBytes: number | null;
  readonly rssFileBytes: number | null;
  readonly sweepSec: number;
}

/** A node serving `dataDir` (embedded log), after reading every key once and settling. */
async function servedMemory(name: string, dataDir: string): Promise<NodeMemory> {
  const node = await startKvs2({ name, dataDir, logFile: join(root, `${name}.log`) });
  try {
    const sweepSec = await sweepEveryKey(node.target, keys, name);
    await sleep(settleMs);
    const parts = rssParts(node.pid);
    return {
      rssBytes: rssBytes(node.pid),
      rssAnonBytes: parts?.anonBytes ?? null,
      rssFileBytes: parts?.fileBytes ?? null,
      sweepSec,
    };
  } finally {
    await node.stop();
  }
}

/** redis-server without persistence, loaded with the same keys: VmRSS and INFO's used_memory_rss. */
async function redisMemory(): Promise<{ rssBytes: number | null; usedMemoryRss: number; usedMemory: number }> {
  const redis = await startRedis(join(root, 'redis'), join(root, 'redis.log'), 'none');
  try {
    await loadRedis(redis.port, keys, VALUE_BYTES);
    await sleep(settleMs);
    const info = await redisInfoMemory(redis.port);
    return {
      rssBytes: rssBytes(redis.serverPids()[0] as number),
      usedMemoryRss: Number(info.used_memory_rss),
      usedMemory: Number(info.used_memory),
    };
  } finally {
    await redis.stop();
  }
}

async function main(): Promise<void> {
  const source = join(root, 'random');
  const order = Array.from({ length: keys }, (_, i) => i);
  const random = seededRandom(7);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  const loadSec = await loadStore(source, order);
  const randomBytes = dataFile(source);
  // An embedded log of the store's identity, starting where the store's applied position is: a node whose
  // log was trimmed after applying it, which a real node can serve.
  await createEmbeddedLogAt(join(source, 'log'), LOG_IDENTITY, keys);
  const randomMemory = await servedMemory('kvs2-random-order', source);

  const file = join(root, 'random.kvs2snap');
  let started = performance.now();
  const snapshot = await snapshotDataDir(source);
  let fileBytes: number;
  try {
    fileBytes = await writeOutput(file, snapshot.encoder);
  } finally {
    await snapshot.close();
  }
  const saveSec = seconds(started);

  const restored = join(root, 'restored');
  started = performance.now();
  await installSnapshot(createReadStream(file, { highWaterMark: 1024 * 1024 }), { dataDir: restored });
  const restoreSec = seconds(started);
  const restoredBytes = dataFile(restored);
  const restoredMemory = await servedMemory('kvs2-restored', restored);

  started = performance.now();
  const compacted = await compactDataDir(source);
  const compactSec = seconds(started);

  const keyOrdered = join(root, 'key-ordered');
  const keyOrderLoadSec = await loadStore(
    keyOrdered,
    Array.from({ length: keys }, (_, i) => i),
  );
  const keyOrderedBytes = dataFile(keyOrdered);
  const redis = await redisMemory();

  const raw = keys * (16 + VALUE_BYTES);
  const report = {
    when: new Date().toISOString(),
    commit: treeCommit(REPO_DIR),
    machine: describeMachine(REPO_DIR),
    keys,
    valueBytes: VALUE_BYTES,
    rawBytes: raw,
    settleSec: settleMs / 1000,
    stores: {
      randomOrder: { dataMdbBytes: randomBytes, loadSec },
      snapshotFile: { bytes: fileBytes, saveSec },
      restored: { dataMdbBytes: restoredBytes, restoreSec },
      compacted: { dataMdbBytes: compacted.bytesAfter, compactSec },
      keyOrderedLoad: { dataMdbBytes: keyOrderedBytes, loadSec: keyOrderLoadSec },
    },
    memory: { randomOrderNode: randomMemory, restoredNode: restoredMemory, redis },
    goals: {
      /** Restored data.mdb over a key-ordered load's (raw bytes plus LMDB's per-record overhead): ≤ 1.1. */
      restoredOverKeyOrdered: restoredBytes / keyOrderedBytes,
      /** RSS of the node serving the restored store over Redis's VmRSS: ≤ 1. */
      restoredRssOverRedis:
        restoredMemory.rssBytes !== null && redis.rssBytes !== null ? restoredMemory.rssBytes / redis.rssBytes : null,
    },
  };
  const out = join(REPO_DIR, 'bench/results', `snapshot-size-${report.when.slice(0, 16).replace(/[:T]/g, '-')}.json`);
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);

  const ratio = (bytes: number): string => (bytes / raw).toFixed(2);
  const lines = [
    `${keys} keys of 16 bytes with ${VALUE_BYTES}-byte values (${mib(raw)} MiB of keys and values)`,
    '',
    '| store | data.mdb (MiB) | ÷ raw bytes | step | seconds |',
    '| --- | --- | --- | --- | --- |',
    `| filled in random order, ${LOAD_BATCH} keys a transaction | ${mib(randomBytes)} | ${ratio(randomBytes)} | load | ${loadSec.toFixed(2)} |`,
    `| snapshot file | ${mib(fileBytes)} | ${ratio(fileBytes)} | save | ${saveSec.toFixed(2)} |`,
    `| restored from the snapshot | ${mib(restoredBytes)} | ${ratio(restoredBytes)} | restore | ${restoreSec.toFixed(2)} |`,
    `| compacted in place | ${mib(compacted.bytesAfter)} | ${ratio(compacted.bytesAfter)} | compact | ${compactSec.toFixed(2)} |`,
    `| filled in key order, ${LOAD_BATCH} keys a transaction (the floor) | ${mib(keyOrderedBytes)} | ${ratio(keyOrderedBytes)} | load | ${keyOrderLoadSec.toFixed(2)} |`,
    '',
    `Restored ÷ key-ordered load: ${report.goals.restoredOverKeyOrdered.toFixed(3)} (goal ≤ 1.1: ${report.goals.restoredOverKeyOrdered <= 1.1 ? 'met' : 'not met'}).`,
    '',
    `| serving (after a MultiGet sweep of every key, then ${settleMs / 1000} s idle) | RSS (MiB) | anonymous | file-backed | sweep seconds |`,
    '| --- | --- | --- | --- | --- |',
    ...(
      [
        ['kvs2 node on the random-order store', randomMemory],
        ['kvs2 node on the restored store', restoredMemory],
      ] as const
    ).map(
      ([what, m]) =>
        `| ${what} | ${mib(m.rssBytes)} | ${mib(m.rssAnonBytes)} | ${mib(m.rssFileBytes)} | ${m.sweepSec.toFixed(2)} |`,
    ),
    `| redis-server, no persistence (used_memory_rss ${mib(redis.usedMemoryRss)}, used_memory ${mib(redis.usedMemory)}) | ${mib(redis.rssBytes)} | | | |`,
    '',
    `Restored node's RSS ÷ Redis's: ${report.goals.restoredRssOverRedis?.toFixed(2) ?? '–'} (goal ≤ 1: ${
      report.goals.restoredRssOverRedis === null ? '–' : report.goals.restoredRssOverRedis <= 1 ? 'met' : 'not met'
    }).`,
  ];
  process.stdout.write(`${lines.join('\n')}\n\n(${out})\n`);
}

try {
  // The nodes run a copy of this tree's build: a rebuild during the run cannot change what is measured.
  snapshotTree(join(root, 'tree'));
  await main();
} finally {
  await stopAll();
  rmSync(root, { recursive: true, force: true });
}
