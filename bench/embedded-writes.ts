/**
 * `Set` at a fixed number in flight on kvs2's embedded log, paired: two builds of kvs2 (a baseline tree and
 * this one) and the write peers of issue 13 (etcd `Put`, Redis `SET` with `appendfsync always`), each started
 * once and loaded with the same keys, then measured in alternating rounds, the order rotating each round,
 * so a slow minute of a shared host weighs on all of them alike. Per kvs2 build it also gives the CPU per
 * Set of each kind of thread (from /proc/<pid>/task/<tid>/stat), which says where the time goes.
 *
 *   npm run build && node dist/bench/embedded-writes.js --baseline /tmp/kvs2-base[,/tmp/other] \
 *     [--keys 200000] [--duration 5] [--rounds 5] [--concurrency 64] [--peers etcd,redis-aof]
 *
 * `--baseline` is a copy of another build (`bin/`, `dist/`, `proto/`, `package.json` and a `node_modules`
 * link), e.g. made with `bench/snapshot-build.sh`. Without it only this tree and the peers run.
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { Command } from 'commander';
import { open } from 'lmdb';
import { redisContender } from './lib/contenders.js';
import { ghzData } from './lib/dataset.js';
import { runGhz } from './lib/ghz.js';
import { loadEtcd, loadKvs2, loadRedis } from './lib/loader.js';
import { cpuSeconds, freePort, SERVER_CORE, spawnManaged, stopAll, waitFor } from './lib/processes.js';
import type { RawResult } from './lib/results.js';
import { spread } from './lib/stats.js';
import { REPO_DIR } from './lib/tree.js';
import { selfTime } from './phases/kvs2.js';
import { startEtcd } from './systems/etcd.js';
import { isServing } from './systems/grpc-health.js';
import { type NoopStack, startNoop } from './systems/noop.js';
import { startRedis } from './systems/redis.js';

const options = new Command('embedded-writes')
  .option('--baseline <dirs>', 'copies of other kvs2 builds to run beside this one, comma-separated')
  .option('--keys <n>', 'keys loaded into every system', Number, 200_000)
  .option('--duration <s>', 'seconds of one measured run', Number, 5)
  .option('--rounds <n>', 'alternating rounds', Number, 5)
  .option('--concurrency <n>', 'calls in flight', Number, 64)
  .option('--value-bytes <n>', 'value size', Number, 100)
  .option('--peers <list>', 'peers: etcd, redis-aof, noop, http2 (empty: none)', 'etcd,redis-aof,noop,http2')
  .option('--profile', "run this tree's kvs2 under node --cpu-prof and print its self time of the last run", false)
  .parse()
  .opts<{
    baseline?: string;
    keys: number;
    duration: number;
    rounds: number;
    concurrency: number;
    valueBytes: number;
    peers: string;
    profile: boolean;
  }>();

interface Runner {
  readonly name: string;
  readonly pids: () => number[];
  /** Transactions the node's store has committed so far (kvs2 only). */
  readonly storeCommits?: () => Promise<number>;
  run(durationSec: number, id: string): Promise<RawResult>;
}

interface Sample {
  readonly opsPerSec: number;
  readonly cpuMsPerSet: number;
  readonly threadsUsPerSet: Record<string, number>;
  readonly setsPerStoreCommit: number | null;
  readonly p50: number | null;
  readonly p99: number | null;
  readonly load: number;
}

const work = mkdtempSync(join(tmpdir(), 'kvs2-embedded-writes-'));
const setData = join(work, 'set.json');
const profileDir = join(work, 'cpu-profile');

/** CPU seconds per thread name (comm) of a process: main thread, libuv workers, V8 workers, ... */
function threadCpu(pid: number): Map<string, number> {
  const byName = new Map<string, number>();
  let tasks: string[] = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return byName;
  }
  for (const tid of tasks) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const seconds = (Number(fields[11]) + Number(fields[12])) / 100;
      const label = tid === String(pid) ? 'main' : name.replace(/[0-9]+$/, '').trim();
      byName.set(label, (byName.get(label) ?? 0) + seconds);
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return byName;
}

async function startKvs2Tree(name: string, tree: string): Promise<Runner> {
  const dataDir = join(work, name);
  mkdirSync(dataDir, { recursive: true });
  const port = await freePort();
  const target = `127.0.0.1:${port}`;
  const nodeFlags = options.profile && name === 'kvs2' ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [];
  const proc = spawnManaged(
    name,
    process.execPath,
    [
      ...nodeFlags,
      join(tree, 'bin/kvs2.js'),
      'serve',
      '--listen',
      target,
      '--data-dir',
      dataDir,
      '--log-level',
      'warn',
    ],
    { core: SERVER_CORE, cwd: work, logFile: join(work, `${name}.log`) },
  );
  await waitFor(`${name} to serve`, () => isServing(target), 60_000, 100);
  const loaded = await loadKvs2(target, options.keys, options.valueBytes);
  process.stderr.write(`[writes] ${name}: loaded ${options.keys} keys in ${loaded.seconds.toFixed(1)} s\n`);
  const call = { target, proto: join(REPO_DIR, 'proto/kvs2.proto'), call: 'kvs2.Kvs2/Set', dataFile: setData };
  return {
    name,
    pids: () => [proc.pid],
    storeCommits: async () => {
      const env = open({ path: join(dataDir, 'store'), readOnly: true });
      try {
        return (env.getStats() as { lastTxnId: number }).lastTxnId;
      } finally {
        await env.close();
      }
    },
    run: (durationSec, id) => runGhz(call, { concurrency: options.concurrency, durationSec }, join(work, `${id}.json`)),
  };
}

async function startEtcdPeer(): Promise<Runner> {
  const etcd = await startEtcd(join(work, 'etcd'), join(work, 'etcd.log'));
  await loadEtcd(etcd.target, options.keys, options.valueBytes);
  const call = {
    target: etcd.target,
    proto: join(REPO_DIR, 'bench/proto/etcd-kv.proto'),
    call: 'etcdserverpb.KV/Put',
    dataFile: setData,
  };
  return {
    name: 'etcd-put',
    pids: () => etcd.serverPids(),
    run: (durationSec, id) => runGhz(call, { concurrency: options.concurrency, durationSec }, join(work, `${id}.json`)),
  };
}

async function startRedisPeer(): Promise<Runner> {
  const redis = await startRedis(join(work, 'redis'), join(work, 'redis.log'), 'aof-always');
  await loadRedis(redis.port, options.keys, options.valueBytes);
  const contender = redisContender({
    name: 'redis-aof',
    system: redis,
    call: { keyspace: options.keys, test: 'set', valueBytes: options.valueBytes },
  });
  let calibrated = false;
  return {
    name: 'redis-aof',
    pids: () => redis.serverPids(),
    run: async (durationSec, id) => {
      const load = { concurrency: options.concurrency, durationSec };
      if (!calibrated) {
        await contender.warmUp(load, id);
        calibrated = true;
      }
      return contender.run(load, id);
    },
  };
}

/**
 * The same gRPC server answering Set without doing anything: the ceiling of kvs2's stack (`noop`), or the
 * same answers from node:http2 without grpc-js (`http2`): the ceiling of Node's HTTP/2.
 */
async function startNoopPeer(stack: NoopStack): Promise<Runner> {
  const noop = await startNoop(join(work, `noop-${stack}.log`), options.valueBytes, stack);
  const call = {
    target: noop.target,
    proto: join(REPO_DIR, 'proto/kvs2.proto'),
    call: 'kvs2.Kvs2/Set',
    dataFile: setData,
  };
  return {
    name: noop.name,
    pids: () => noop.serverPids(),
    run: (durationSec, id) => runGhz(call, { concurrency: options.concurrency, durationSec }, join(work, `${id}.json`)),
  };
}

async function measure(runner: Runner, id: string): Promise<Sample> {
  const pids = runner.pids();
  const cpuBefore = pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  const threadsBefore = threadCpu(pids[0] ?? 0);
  const commitsBefore = await runner.storeCommits?.();
  const raw = await runner.run(options.duration, id);
  const commitsAfter = await runner.storeCommits?.();
  const threadsAfter = threadCpu(pids[0] ?? 0);
  const cpuAfter = pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  const threadsUsPerSet: Record<string, number> = {};
  for (const [name, after] of threadsAfter) {
    const used = after - (threadsBefore.get(name) ?? 0);
    if (used > 0 && raw.ops > 0) threadsUsPerSet[name] = (used / raw.ops) * 1e6;
  }
  return {
    opsPerSec: raw.seconds > 0 ? raw.ops / raw.seconds : 0,
    cpuMsPerSet: raw.ops > 0 ? ((cpuAfter - cpuBefore) / raw.ops) * 1000 : 0,
    threadsUsPerSet,
    setsPerStoreCommit:
      commitsBefore === undefined || commitsAfter === undefined || commitsAfter === commitsBefore
        ? null
        : raw.ops / (commitsAfter - commitsBefore),
    p50: raw.latencyMs.p50,
    p99: raw.latencyMs.p99,
    load: loadavg()[0] ?? 0,
  };
}

const fmt = (n: number | null | undefined, digits = 0): string =>
  n === null || n === undefined ? '–' : n.toLocaleString('en-US', { maximumFractionDigits: digits });

async function main(): Promise<void> {
  ghzData.kvs2Set(setData, options.keys, 50_000, options.valueBytes);
  const runners: Runner[] = [];
  for (const dir of (options.baseline ?? '').split(',').filter(Boolean)) {
    runners.push(await startKvs2Tree(`kvs2-${basename(dir)}`, dir));
  }
  // This tree's build is copied first, so that a rebuild during the run cannot change what is measured.
  const tree = join(work, 'tree');
  for (const path of ['package.json', 'bin', 'dist', 'proto', 'src/gen/descriptor-set.binpb']) {
    cpSync(join(REPO_DIR, path), join(tree, path), { recursive: true });
  }
  symlinkSync(join(REPO_DIR, 'node_modules'), join(tree, 'node_modules'), 'dir');
  runners.push(await startKvs2Tree('kvs2', tree));
  const peers = options.peers.split(',').filter(Boolean);
  if (peers.includes('etcd')) runners.push(await startEtcdPeer());
  if (peers.includes('redis-aof')) runners.push(await startRedisPeer());
  if (peers.includes('noop')) runners.push(await startNoopPeer('grpc-js'));
  if (peers.includes('http2')) runners.push(await startNoopPeer('http2'));

  for (const runner of runners) await runner.run(2, `${runner.name}-warmup`);
  const samples = new Map<string, Sample[]>(runners.map((r) => [r.name, []]));
  for (let round = 0; round < options.rounds; round++) {
    const order = runners.map((_, i) => runners[(i + round) % runners.length] as Runner);
    for (const runner of order) {
      const sample = await measure(runner, `${runner.name}-${round}`);
      samples.get(runner.name)?.push(sample);
      process.stderr.write(
        `[writes] round ${round + 1} ${runner.name}: ${fmt(sample.opsPerSec)}/s, ${fmt(sample.cpuMsPerSet, 3)} ms CPU/Set, load ${sample.load.toFixed(1)}\n`,
      );
    }
  }

  const medianOf = (name: string): number => spread((samples.get(name) ?? []).map((s) => s.opsPerSec))?.median ?? 0;
  const lines = [
    `Set at ${options.concurrency} in flight, ${options.keys} keys, ${options.rounds} alternating rounds of ${options.duration} s`,
    '',
    '| contender | calls/s median (min–max) | server CPU ms/Set | p50 / p99 ms | load 1m |',
    '| --- | --- | --- | --- | --- |',
  ];
  for (const runner of runners) {
    const s = samples.get(runner.name) ?? [];
    const ops = spread(s.map((x) => x.opsPerSec));
    const cpu = spread(s.map((x) => x.cpuMsPerSet));
    const p50 = spread(s.map((x) => x.p50));
    const p99 = spread(s.map((x) => x.p99));
    const load = spread(s.map((x) => x.load));
    lines.push(
      `| ${runner.name} | ${fmt(ops?.median)} (${fmt(ops?.min)}–${fmt(ops?.max)}) | ${fmt(cpu?.median, 3)} | ${fmt(p50?.median, 2)} / ${fmt(p99?.median, 2)} | ${fmt(load?.median, 1)} |`,
    );
  }
  lines.push('');
  const kvs2 = medianOf('kvs2');
  for (const runner of runners) {
    if (runner.name !== 'kvs2') lines.push(`kvs2 ÷ ${runner.name}: ${(kvs2 / medianOf(runner.name)).toFixed(2)}`);
  }
  for (const runner of runners.filter((r) => r.name.startsWith('kvs2') || r.name === 'noop' || r.name === 'http2')) {
    const s = samples.get(runner.name) ?? [];
    const names = new Set(s.flatMap((x) => Object.keys(x.threadsUsPerSet)));
    const parts = [...names]
      .map((name) => ({ name, us: spread(s.map((x) => x.threadsUsPerSet[name] ?? 0))?.median ?? 0 }))
      .filter((p) => p.us >= 0.5)
      .sort((a, b) => b.us - a.us)
      .map((p) => `${p.name} ${fmt(p.us, 1)}`);
    const perCommit = spread(s.map((x) => x.setsPerStoreCommit))?.median;
    const commits = perCommit === undefined ? '' : `; ${fmt(perCommit, 1)} Sets per store transaction`;
    lines.push(`${runner.name} CPU µs per Set by thread: ${parts.join(', ')}${commits}`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

try {
  await main();
} finally {
  await stopAll();
  const profile = options.profile ? readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile')) : undefined;
  if (profile !== undefined) {
    const self = selfTime(join(profileDir, profile), options.duration, 30);
    const rows = [
      ...self.byComponent.map((c) => `${c.component}: ${c.selfPercent}%`),
      '',
      ...self.topSelf.map((f) => `${f.selfPercent}% ${f.fn}`),
    ];
    process.stdout.write(`\nkvs2 self time of its last run (non-idle samples):\n${rows.join('\n')}\n`);
  }
  if (!process.env.KEEP_DATA) rmSync(work, { recursive: true, force: true });
  else process.stderr.write(`[writes] data kept in ${work}\n`);
}
