/**
 * Issue 17's in-process goals, side by side in one run on this machine: reads of kvs2's data inside the
 * application's process, through the in-process replica (`openReplica` on a Kafka topic) and the co-located
 * reader (`openColocatedReader` on a running node's data dir), against Redis GET and kvs2's gRPC Get at 64
 * in flight.
 *
 * One broker, one kvs2 node on its topic, N keys loaded into the topic (kcat) and into Redis. Five measured
 * processes (bench/in-process-probe.ts), each an application holding one reader: three in-process replicas
 * of the topic, each in a data dir of its own, and a co-located reader of the node's store. The replicas
 * differ in where the replica's fetch, parse and apply run (issue 17's follow-up, `applyOn`): on the
 * reading thread (`applyOn: 'caller'`), or on the replica's worker thread (`'worker'`), that thread moved to
 * the other core (`taskset -p -c <core> <tid>`, the tid found by its name `kvs2-replica` in
 * /proc/<pid>/task/<tid>/comm), left on the probe's core beside the reading thread, or unpinned (allowed on
 * every core, the scheduler's choice). Each repetition then:
 *  1. under writes: a steady writer overwrites random keys at --writes-per-second (kcat, paced), which both
 *     the node and the replica apply; each probe times `get` and `getMany` of 100 keys per call
 *     (process.hrtime.bigint() around every call, nearest-rank percentiles over every call) and counts its
 *     `get` loop's reads per second;
 *  2. quiet: the writer stopped and both readers caught up, each probe's `get` loop, Redis GET at 64 in
 *     flight (redis-benchmark) and the node's gRPC Get at 64 in flight (ghz).
 * Within each half the order alternates (reversed every other repetition). Tables give the median and the
 * min–max of the repetitions. The other probe is stopped (SIGSTOP) through each window. By default the
 * measured processes run on the client core, as an application with a core of its own; the broker, the
 * node, Redis, the writer and this script on the server core; redis-benchmark and ghz on the client core
 * (during their own windows). `--probe-core 0 --writer-core 1` is the suite's usual placement instead
 * (measured processes beside the servers). `--readers` measures a subset (e.g. `replica,worker`).
 * `--helpers-other-core` also moves each probe's threads but its main one to the other core: V8's platform
 * threads (the GC helpers of every isolate in the process, the replica worker's included) and libuv's pool
 * (where lmdb-js runs the write transactions and syncs of applyOn 'caller'; with 'worker' the replica's
 * thread commits itself): moving only the thread named kvs2-replica leaves those on the reading thread's core.
 * A `-tuned` reader (e.g. `worker-tuned`) is the same reader in a process started with --tuned-flags.
 *
 *   npm run build && node dist/bench/in-process-reads.js [--keys 1000000] [--duration 5] [--repetitions 3]
 *     [--writes-per-second 10000] [--in-flight 64] [--probe-core 1] [--writer-core 0] [--out bench/results]
 *     [--keep-data]
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { ghzContender, redisContender } from './lib/contenders.js';
import { ghzData } from './lib/dataset.js';
import { loadRedis } from './lib/loader.js';
import { describeMachine, machineLine, treeCommit } from './lib/machine.js';
import { type Contender, measure } from './lib/measure.js';
import { Probe, type ProbeLatency, type ProbeWindow } from './lib/probe.js';
import { CLIENT_CORE, coreBusyPercent, coreTimes, SERVER_CORE, sleep, stopAll, waitFor } from './lib/processes.js';
import type { Sample } from './lib/results.js';
import { spread } from './lib/stats.js';
import { SteadyWriter } from './lib/steady-writer.js';
import { REPO_DIR, snapshotTree, treePath } from './lib/tree.js';
import { kcatLines, waitUntilApplied } from './phases/kafka.js';
import { kafkaUp, kcatProduce } from './systems/kafka.js';
import { startKvs2 } from './systems/kvs2.js';
import { startRedis } from './systems/redis.js';

const TOPIC = 'kvs2-in-process';
const MULTI_GET_KEYS = 100;
/** Issue 17's goals for reads in the application's process. */
const GOALS = { getP99Us: 20, multiGetP99Ms: 0.5, readsOverRedis: 10 } as const;
/** Unmeasured runs before the repetitions: JIT, page cache, redis-benchmark's calibration. */
const WARM_UP_SEC = 2;

function positiveInt(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

function seconds(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(s|m)?$/.exec(text.trim());
  if (!m) throw new InvalidArgumentError('expected a duration like 5, 10s or 1m');
  return Number(m[1]) * (m[2] === 'm' ? 60 : 1);
}

/**
 * The measured readers: in-process replicas differing in where the replica applies, the co-located reader,
 * and `-tuned` twins of three of them whose process runs with --tuned-flags (the Node flags an application
 * may choose for its collector, as `kvs2 serve` does for itself).
 */
const ALL_READERS = [
  'replica',
  'worker',
  'worker-same-core',
  'worker-unpinned',
  'colocated',
  'replica-tuned',
  'worker-tuned',
  'colocated-tuned',
] as const;
type ReaderName = (typeof ALL_READERS)[number];
const TUNED: readonly ReaderName[] = ['replica-tuned', 'worker-tuned', 'colocated-tuned'];
const COLOCATED: readonly ReaderName[] = ['colocated', 'colocated-tuned'];

const options = new Command('in-process-reads')
  .description(
    "issue 17's in-process read goals: the in-process replica and the co-located reader against Redis and gRPC",
  )
  .option('--keys <n>', 'keys loaded (16 B keys)', positiveInt, 1_000_000)
  .option('--value-bytes <n>', 'value size', positiveInt, 100)
  .option('--duration <time>', 'measured time of each window (e.g. 5, 10s)', seconds, 5)
  .option('--repetitions <n>', 'repetitions; the order alternates between them', positiveInt, 3)
  .option('--writes-per-second <n>', 'rate of the steady writer during the latency windows', positiveInt, 10_000)
  .option('--in-flight <n>', 'calls in flight of Redis GET and gRPC Get', positiveInt, 64)
  .option(
    '--probe-core <n>',
    `core of the two measured processes (default ${CLIENT_CORE}, where the load generators run in their own windows only; ${SERVER_CORE}: beside the servers)`,
    coreNumber,
    CLIENT_CORE,
  )
  .option(
    '--writer-core <n>',
    `core of the steady writer (kcat) and of this script, whose pacer feeds it (default ${SERVER_CORE}, so that ` +
      'with the default --probe-core the measured process has its core to itself during its windows, as an ' +
      `application with a core of its own would; ${CLIENT_CORE}: beside the load generators, the suite's usual place)`,
    coreNumber,
    SERVER_CORE,
  )
  .option('--out <dir>', 'where to write in-process-reads-<timestamp>.{md,json}', join(REPO_DIR, 'bench/results'))
  .option('--no-setup', 'do not run bench/setup.sh (the tools must be installed)')
  .option('--keep-data', 'keep the temporary folder (data, logs)', false)
  .option(
    '--helpers-other-core',
    "also move every probe's threads but its main thread (V8's GC helpers, libuv's pool, where lmdb-js commits) to the other core",
    false,
  )
  .option(
    '--tuned-flags <flags>',
    'Node flags of the -tuned readers (space-separated)',
    '--max-semi-space-size=2 --single-threaded-gc',
  )
  .option('--readers <list>', `the readers measured, of ${ALL_READERS.join(', ')}`, readerList, [
    'replica',
    'worker',
    'worker-same-core',
    'worker-unpinned',
    'colocated',
  ])
  .parse()
  .opts<{
    keys: number;
    valueBytes: number;
    duration: number;
    repetitions: number;
    writesPerSecond: number;
    inFlight: number;
    probeCore: number;
    writerCore: number;
    out: string;
    setup: boolean;
    keepData: boolean;
    readers: ReaderName[];
    helpersOtherCore: boolean;
    tunedFlags: string;
  }>();

function coreNumber(text: string): number {
  const core = Number(text);
  if (core !== SERVER_CORE && core !== CLIENT_CORE)
    throw new InvalidArgumentError(`expected ${SERVER_CORE} or ${CLIENT_CORE}`);
  return core;
}

function readerList(text: string): ReaderName[] {
  const names = text.split(',').map((name) => name.trim());
  for (const name of names) {
    if (!(ALL_READERS as readonly string[]).includes(name)) {
      throw new InvalidArgumentError(`expected readers among ${ALL_READERS.join(', ')}`);
    }
  }
  if (!names.includes('colocated'))
    throw new InvalidArgumentError('colocated is needed: it says what the node applied');
  return ALL_READERS.filter((name) => names.includes(name));
}

const READERS: readonly ReaderName[] = options.readers;
/** The readers that are in-process replicas (they apply the topic themselves, and catch up before a window). */
const REPLICAS: readonly ReaderName[] = READERS.filter((name) => !COLOCATED.includes(name));
const TUNED_FLAGS: readonly string[] = options.tunedFlags.split(/\s+/).filter((flag) => flag !== '');
/** The core that is not the probes' (where a replica's worker thread is moved). */
const OTHER_CORE = options.probeCore === SERVER_CORE ? CLIENT_CORE : SERVER_CORE;
const READER_LABEL: Record<ReaderName, string> = {
  replica: "in-process replica, applyOn 'caller' (apply on the reading thread)",
  worker: `in-process replica, applyOn 'worker', its thread on core ${OTHER_CORE}`,
  'worker-same-core': `in-process replica, applyOn 'worker', its thread on core ${options.probeCore} (the reading thread's)`,
  'worker-unpinned': "in-process replica, applyOn 'worker', its thread unpinned (either core)",
  colocated: "co-located reader (openColocatedReader, the node's store)",
  'replica-tuned': `as replica, the process started with ${options.tunedFlags}`,
  'worker-tuned': `as worker, the process started with ${options.tunedFlags}`,
  'colocated-tuned': `as colocated, the process started with ${options.tunedFlags}`,
};
/** Where each replica's worker thread is put once it runs (taskset -p -c), null: a replica without one. */
const WORKER_CORES: Record<ReaderName, string | null> = {
  replica: null,
  worker: String(OTHER_CORE),
  'worker-same-core': String(options.probeCore),
  'worker-unpinned': `${SERVER_CORE},${CLIENT_CORE}`,
  colocated: null,
  'replica-tuned': null,
  'worker-tuned': String(OTHER_CORE),
  'colocated-tuned': null,
};

/** The in-process replica's worker thread of process `pid`: found by its name (src/replica-lib/worker-replica.ts). */
function replicaThreadOf(pid: number): number {
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
    if (name === 'kvs2-replica') return Number(tid);
  }
  throw new Error(`process ${pid} has no thread named kvs2-replica`);
}

/**
 * Moves the probe's threads other than its main thread and the replica's worker thread (V8's platform
 * threads, which run the concurrent and parallel GC of every isolate of the process; libuv's pool, where
 * lmdb-js commits the write transactions of applyOn 'caller') to `core`. Returns their names and tids.
 */
function moveHelpers(pid: number, core: number): string[] {
  const moved: string[] = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
    if (Number(tid) === pid || name === 'kvs2-replica') continue;
    execFileSync('taskset', ['-p', '-c', String(core), tid], { stdio: 'ignore' });
    moved.push(`${name} ${tid}`);
  }
  return moved;
}

/** The thread's affinity as taskset states it (e.g. "pid 123's current affinity list: 0"). */
function affinityOf(tid: number): string {
  return execFileSync('taskset', ['-c', '-p', String(tid)], { encoding: 'utf8' }).trim();
}

/** A probe's window with the cores' busy time around it, as the orchestrator saw it. */
type Window = ProbeWindow & { readonly coreBusyPercent: number[] };

interface Repetition {
  readonly underWrites: Partial<Record<ReaderName, { get: Window; getMany: Window; getLoop: Window }>>;
  readonly quiet: { readers: Partial<Record<ReaderName, Window>>; redis: Sample; grpc: Sample };
  /** What the writer handed kcat during the under-writes half. */
  readonly writer: { records: number; recordsPerSec: number };
}

const work = mkdtempSync(join(tmpdir(), 'kvs2-in-process-reads-'));
const log = (message: string): void => {
  process.stderr.write(`[in-process-reads ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
};

/** bench/setup.sh (as the suite runs it) installs what is missing and prints the tools' versions. */
function setUpTools(): Record<string, string> {
  const stdout = execFileSync('bash', [join(REPO_DIR, 'bench/setup.sh'), ...(options.setup ? [] : ['--check'])], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const tools: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) tools[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return tools;
}

/**
 * One measured window of `name`'s probe, the other probe stopped meanwhile (SIGSTOP): both share a core,
 * and each window measures one reader with that core to itself. A replica stopped through the other's
 * window first catches up with the node, so that its own window applies the writer's rate and no backlog.
 */
async function probeWindow(
  probes: Probes,
  name: ReaderName,
  kind: 'get' | 'getMany',
  perCall: boolean,
  sec: number,
): Promise<Window> {
  const probe = probeOf(probes, name);
  if (REPLICAS.includes(name)) await replicaCaughtUp(probes, name);
  const others = READERS.filter((other) => other !== name).map((other) => probeOf(probes, other));
  for (const other of others) other.pause();
  try {
    const before = coreTimes();
    const window = await probe.measure(kind, sec, perCall);
    if (window.misses > 0) throw new Error(`${probe.name}: ${window.misses} reads of loaded keys found nothing`);
    return { ...window, coreBusyPercent: coreBusyPercent(before, coreTimes()) };
  } finally {
    for (const other of others) other.resume();
  }
}

type Probes = Partial<Record<ReaderName, Probe>>;

function probeOf(probes: Probes, name: ReaderName): Probe {
  const probe = probes[name];
  if (probe === undefined) throw new Error(`no probe for ${name}`);
  return probe;
}

/** Waits until the replica has applied what the node had applied when asked (the writer may go on). */
async function replicaCaughtUp(probes: Probes, name: ReaderName): Promise<void> {
  const { records: target } = await probeOf(probes, 'colocated').applied();
  await waitFor(
    `the ${name} replica to catch up with the node`,
    async () => (await probeOf(probes, name).applied()).records >= target,
    5 * 60_000,
    20,
  );
}

/** Waits until every reader has applied the same records and nothing moves: the writer's backlog is applied. */
async function untilSettled(probes: Probes): Promise<void> {
  let last = -1;
  await waitFor(
    'the replicas and the node to apply the writer backlog',
    async () => {
      const applied = await Promise.all(READERS.map((name) => probeOf(probes, name).applied()));
      const records = applied.map((a) => a.records);
      const same = records.every((r) => r === records[0]);
      const settled = same && records[0] === last;
      last = same ? (records[0] as number) : -1;
      return settled;
    },
    5 * 60_000,
    250,
  );
}

/** Runs the thunks in order on even repetitions and reversed on odd ones; results come back in the given order. */
async function alternated<T>(rep: number, steps: ReadonlyArray<() => Promise<T>>): Promise<T[]> {
  const order = steps.map((_, i) => i);
  if (rep % 2 === 1) order.reverse();
  const results: T[] = new Array(steps.length);
  for (const i of order) results[i] = await (steps[i] as () => Promise<T>)();
  return results;
}

async function main(): Promise<void> {
  const startedAt = new Date();
  if (Number(process.versions.node.split('.')[0]) < 24) {
    throw new Error(`kvs2 needs Node 24 (this is ${process.version}): run node_modules/.bin/node or through npm`);
  }
  const machine = describeMachine(REPO_DIR); // before pinning ourselves: nproc honours affinity
  // This script (and the writer's pacer in it) runs beside the writer: by default off the server core, as the
  // suite's orchestrator does. The load generators it starts are pinned to the client core either way.
  execFileSync('taskset', ['-a', '-p', '-c', String(options.writerCore), String(process.pid)], { stdio: 'ignore' });
  const tools = setUpTools();
  // The build runs from a copy, so that a rebuild in the working tree cannot change what is measured.
  const tree = join(work, 'tree');
  snapshotTree(tree);
  const dir = (name: string): string => {
    const path = join(work, name);
    mkdirSync(path, { recursive: true });
    return path;
  };
  const logFile = (name: string): string => join(dir('logs'), `${name}.log`);
  const sec = options.duration;

  log(`work dir ${work}; starting Kafka (one broker)`);
  const cluster = await kafkaUp(dir('kafka-state'));
  const nodeDataDir = dir('kvs2-node');
  const node = await startKvs2({
    name: 'kvs2-node',
    dataDir: nodeDataDir,
    logFile: logFile('kvs2-node'),
    // A read never involves the broker: the node's CPU per gRPC Get is the node's alone.
    kafka: { brokers: cluster.brokers, topic: TOPIC, extraPids: () => [] },
  });
  log(`loading ${options.keys} keys into the topic with kcat`);
  const { seconds: loaded } = await kcatProduce(cluster, TOPIC, kcatLines(options.keys, options.valueBytes));
  await waitUntilApplied(node, options.keys);
  log(`topic loaded in ${loaded.toFixed(1)} s; the node applied it; starting Redis`);
  const redis = await startRedis(dir('redis'), logFile('redis'), 'none');
  const redisLoad = await loadRedis(redis.port, options.keys, options.valueBytes);

  log(`starting the readers (${READERS.join(', ')}); each replica catches up with the topic`);
  const probeArgs = ['--keys', String(options.keys), '--multi-get-keys', String(MULTI_GET_KEYS)];
  const probes: Probes = {};
  /** Each worker thread's affinity once placed, as taskset reports it. */
  const workerThreads: Partial<Record<ReaderName, { tid: number; affinity: string }>> = {};
  const opened: Partial<Record<ReaderName, number>> = {};
  const helpers: Partial<Record<ReaderName, string[]>> = {};
  for (const name of READERS) {
    const replicaArgs = [
      '--mode',
      'replica',
      '--data-dir',
      dir(`replica-${name}`),
      '--brokers',
      cluster.brokers,
      '--topic',
      TOPIC,
      '--apply-on',
      name === 'replica' || name === 'replica-tuned' ? 'caller' : 'worker',
    ];
    const probe = await Probe.start({
      name: `${name}-probe`,
      tree,
      cwd: work,
      logFile: logFile(`${name}-probe`),
      args: [
        ...(COLOCATED.includes(name) ? ['--mode', 'colocated', '--data-dir', nodeDataDir] : replicaArgs),
        ...probeArgs,
      ],
      readyTimeoutMs: COLOCATED.includes(name) ? 60_000 : 60 * 60_000,
      nodeFlags: TUNED.includes(name) ? TUNED_FLAGS : [],
      core: options.probeCore,
    });
    probes[name] = probe;
    opened[name] = probe.readyMs / 1000;
    const cores = WORKER_CORES[name];
    if (cores !== null) {
      const tid = replicaThreadOf(probe.pid);
      execFileSync('taskset', ['-p', '-c', cores, String(tid)], { stdio: 'ignore' });
      workerThreads[name] = { tid, affinity: affinityOf(tid) };
      log(`${name}: worker thread ${tid} placed: ${workerThreads[name]?.affinity}`);
    }
    if (options.helpersOtherCore) {
      helpers[name] = moveHelpers(probe.pid, OTHER_CORE);
      log(`${name}: moved to core ${OTHER_CORE}: ${helpers[name]?.join(', ')}`);
    }
  }
  for (const name of READERS) {
    const { keys } = await probeOf(probes, name).applied();
    if (keys !== options.keys) throw new Error(`${name} holds ${keys} keys, not ${options.keys}`);
  }
  const setup = {
    kcatLoadSec: loaded,
    redisLoadSec: redisLoad.seconds,
    openSec: opened,
    workerThreads,
    helpersMoved: helpers,
    tunedFlags: READERS.some((name) => TUNED.includes(name)) ? TUNED_FLAGS : null,
  };
  log(`opened: ${JSON.stringify(opened)}`);

  const getData = join(work, 'get.json');
  ghzData.kvs2Get(getData, options.keys, 50_000);
  const grpc: Contender = ghzContender({
    name: 'kvs2-grpc-get',
    system: node,
    proto: treePath('proto/kvs2.proto'),
    call: 'kvs2.Kvs2/Get',
    dataFile: getData,
    workDir: dir('ghz'),
    warmUpSec: WARM_UP_SEC,
  });
  const redisGet: Contender = redisContender({
    name: 'redis-get',
    system: redis,
    call: { keyspace: options.keys, test: 'get', valueBytes: options.valueBytes },
  });
  const load = { concurrency: options.inFlight, durationSec: sec };

  const timerFloor = await probeOf(probes, 'colocated').timerFloor();
  log('warming up');
  let writer = SteadyWriter.start(cluster, TOPIC, {
    keys: options.keys,
    valueBytes: options.valueBytes,
    recordsPerSec: options.writesPerSecond,
    seed: 1_000,
    core: options.writerCore,
  });
  for (const name of READERS) {
    const probe = probeOf(probes, name);
    await probe.measure('get', WARM_UP_SEC, true);
    await probe.measure('getMany', WARM_UP_SEC, true);
    await probe.measure('get', WARM_UP_SEC, false);
  }
  await writer.stop();
  await untilSettled(probes);
  await grpc.warmUp(load, 'grpc-warm');
  await redisGet.warmUp(load, 'redis-warm');

  const repetitions: Repetition[] = [];
  for (let rep = 0; rep < options.repetitions; rep++) {
    writer = SteadyWriter.start(cluster, TOPIC, {
      keys: options.keys,
      valueBytes: options.valueBytes,
      recordsPerSec: options.writesPerSecond,
      seed: 1_001 + rep,
      core: options.writerCore,
    });
    // Both readers apply the stream before anything is measured.
    await sleep(1_000);
    const steps: Array<() => Promise<Window>> = [];
    for (const name of READERS) {
      steps.push(
        () => probeWindow(probes, name, 'get', true, sec),
        () => probeWindow(probes, name, 'getMany', true, sec),
        () => probeWindow(probes, name, 'get', false, sec),
      );
    }
    const w = await alternated(rep, steps);
    const written = await writer.stop();
    await untilSettled(probes);
    const quietSteps: Array<() => Promise<Window | Sample>> = [
      ...READERS.map((name) => () => probeWindow(probes, name, 'get', false, sec)),
      () => measure(redisGet, load, `redis-${rep}`),
      () => measure(grpc, load, `grpc-${rep}`),
    ];
    const quietResults = await alternated<Window | Sample>(rep, quietSteps);
    const at = (i: number) => w[i] as Window;
    const underWrites: Repetition['underWrites'] = {};
    const quietReaders: Repetition['quiet']['readers'] = {};
    READERS.forEach((name, i) => {
      underWrites[name] = { get: at(3 * i), getMany: at(3 * i + 1), getLoop: at(3 * i + 2) };
      quietReaders[name] = quietResults[i] as Window;
    });
    const redisSample = quietResults[READERS.length] as Sample;
    const grpcSample = quietResults[READERS.length + 1] as Sample;
    repetitions.push({
      underWrites,
      quiet: { readers: quietReaders, redis: redisSample, grpc: grpcSample },
      writer: written,
    });
    const us = (ns: number | undefined) => ((ns ?? Number.NaN) / 1000).toFixed(1);
    log(
      `repetition ${rep + 1}/${options.repetitions}: under ${written.recordsPerSec.toFixed(0)} writes/s: ` +
        READERS.map(
          (name) =>
            `${name} get p99 ${us(underWrites[name]?.get.latencyNs?.p99)} µs, getMany p99 ` +
            `${us(underWrites[name]?.getMany.latencyNs?.p99)} µs, reads/s ${underWrites[name]?.getLoop.callsPerSec.toFixed(0)}`,
        ).join('; ') +
        `. Quiet reads/s: ${READERS.map((name) => `${name} ${quietReaders[name]?.callsPerSec.toFixed(0)}`).join(', ')}, ` +
        `Redis ${redisSample.opsPerSec.toFixed(0)}, gRPC ${grpcSample.opsPerSec.toFixed(0)}`,
    );
  }
  for (const name of READERS) await probeOf(probes, name).stop();
  await redis.stop();
  await node.stop();
  await cluster.down();

  const report = buildReport(startedAt, machine, tools, setup, timerFloor, repetitions);
  const outDir = resolve(options.out);
  mkdirSync(outDir, { recursive: true });
  const stamp = report.startedAt.replace(/\.\d+Z$/, 'Z').replaceAll(':', '-');
  const base = join(outDir, `in-process-reads-${stamp}`);
  writeFileSync(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);
  const markdown = renderMarkdown(report);
  writeFileSync(`${base}.md`, markdown);
  process.stdout.write(`${markdown}\n(${base}.md, ${base}.json)\n`);
}

type Spread = ReturnType<typeof spread>;

interface LatencySummary {
  readonly callsPerSec: Spread;
  readonly p50Us: Spread;
  readonly p99Us: Spread;
  readonly p999Us: Spread;
  readonly maxUs: Spread;
  readonly appliedPerSec: Spread;
  readonly gcCount: Spread;
  readonly gcMaxMs: Spread;
  readonly cpuPercent: Spread;
  /** Share of the window's wall time spent inside the timed calls (the rest: event-loop turns, or off the core). */
  readonly inCallsPercent: Spread;
}

function latencySummary(windows: readonly Window[]): LatencySummary {
  const us = (pick: (l: ProbeLatency) => number) =>
    spread(windows.map((w) => (w.latencyNs ? pick(w.latencyNs) / 1000 : null)));
  return {
    callsPerSec: spread(windows.map((w) => w.callsPerSec)),
    p50Us: us((l) => l.p50),
    p99Us: us((l) => l.p99),
    p999Us: us((l) => l.p999),
    maxUs: us((l) => l.max),
    appliedPerSec: spread(windows.map((w) => w.appliedPerSec)),
    gcCount: spread(windows.map((w) => w.gc.count)),
    gcMaxMs: spread(windows.map((w) => w.gc.maxMs)),
    cpuPercent: spread(windows.map((w) => w.cpuPercent)),
    inCallsPercent: spread(
      windows.map((w) => (w.latencyNs ? ((w.latencyNs.mean * w.calls) / (w.seconds * 1e9)) * 100 : null)),
    ),
  };
}

function sampleSummary(samples: readonly Sample[]) {
  return {
    callsPerSec: spread(samples.map((s) => s.opsPerSec)),
    p50Ms: spread(samples.map((s) => s.latencyMs.p50)),
    p99Ms: spread(samples.map((s) => s.latencyMs.p99)),
    serverCpuSecPer1kOps: spread(samples.map((s) => s.serverCpuSecPer1kOps)),
    clientCoreBusyPercent: spread(samples.map((s) => s.coreBusyPercent[CLIENT_CORE] ?? null)),
    errors: samples.reduce((sum, s) => sum + s.errors, 0),
  };
}

interface Setup {
  readonly kcatLoadSec: number;
  readonly redisLoadSec: number;
  /** Each reader's open (a replica: and its catch-up with the whole topic), in seconds. */
  readonly openSec: Partial<Record<ReaderName, number>>;
  readonly workerThreads: Partial<Record<ReaderName, { tid: number; affinity: string }>>;
  /** With --helpers-other-core: the threads moved off the probes' core, per probe. */
  readonly helpersMoved: Partial<Record<ReaderName, string[]>>;
}

function buildReport(
  startedAt: Date,
  machine: Record<string, string | number>,
  tools: Record<string, string>,
  setup: Setup,
  timerFloorNs: ProbeLatency,
  repetitions: readonly Repetition[],
) {
  const windowsOf = (name: ReaderName) =>
    repetitions.map((r) => r.underWrites[name]).filter((w): w is NonNullable<typeof w> => w !== undefined);
  const under = (name: ReaderName) => ({
    get: latencySummary(windowsOf(name).map((w) => w.get)),
    getMany: latencySummary(windowsOf(name).map((w) => w.getMany)),
    getLoop: latencySummary(windowsOf(name).map((w) => w.getLoop)),
  });
  const quiet = (name: ReaderName) =>
    latencySummary(repetitions.map((r) => r.quiet.readers[name]).filter((w): w is Window => w !== undefined));
  const quietOf = (r: Repetition, name: ReaderName): number => r.quiet.readers[name]?.callsPerSec ?? Number.NaN;
  const loopOf = (r: Repetition, name: ReaderName): number => r.underWrites[name]?.getLoop.callsPerSec ?? Number.NaN;
  // Ratios are taken repetition by repetition (the windows of one repetition ran minutes apart at most).
  const overRedis = (pick: (r: Repetition) => number) =>
    spread(repetitions.map((r) => (r.quiet.redis.opsPerSec > 0 ? pick(r) / r.quiet.redis.opsPerSec : null)));
  const overGrpc = (pick: (r: Repetition) => number) =>
    spread(repetitions.map((r) => (r.quiet.grpc.opsPerSec > 0 ? pick(r) / r.quiet.grpc.opsPerSec : null)));
  const perReader = <T>(make: (name: ReaderName) => T): Partial<Record<ReaderName, T>> =>
    Object.fromEntries(READERS.map((name) => [name, make(name)]));
  const ratios = perReader((name) => ({
    quietOverRedis: overRedis((r) => quietOf(r, name)),
    underWritesOverRedis: overRedis((r) => loopOf(r, name)),
    quietOverGrpc: overGrpc((r) => quietOf(r, name)),
    /** Reads/s under writes over the same reader's reads/s without: what the writes leave the reading thread. */
    keptUnderWrites: spread(repetitions.map((r) => loopOf(r, name) / quietOf(r, name))),
  }));
  const underWrites = perReader(under);
  const ms = (ns: number | undefined) => (ns === undefined ? null : ns / 1e6);
  const writerRate = spread(repetitions.map((r) => r.writer.recordsPerSec));
  const goals = READERS.flatMap((name) => {
    const u = under(name);
    const quietRatio = ratios[name]?.quietOverRedis;
    const busyRatio = ratios[name]?.underWritesOverRedis;
    const met = (value: number | undefined, ok: (v: number) => boolean) => (value === undefined ? null : ok(value));
    return [
      {
        reader: name,
        goal: `get p99 ≤ ${GOALS.getP99Us} µs under ${options.writesPerSecond.toLocaleString('en-US')} writes/s`,
        measured: u.get.p99Us,
        unit: 'µs',
        met: met(u.get.p99Us?.median, (v) => v <= GOALS.getP99Us),
      },
      {
        reader: name,
        goal: `getMany of ${MULTI_GET_KEYS} p99 ≤ ${GOALS.multiGetP99Ms} ms under ${options.writesPerSecond.toLocaleString('en-US')} writes/s`,
        measured: spread(repetitions.map((r) => ms(r.underWrites[name]?.getMany.latencyNs?.p99))),
        unit: 'ms',
        met: met(u.getMany.p99Us?.median, (v) => v / 1000 <= GOALS.multiGetP99Ms),
      },
      {
        reader: name,
        goal: `reads/s ≥ ${GOALS.readsOverRedis}× Redis GET at ${options.inFlight} in flight (both with no writes)`,
        measured: quietRatio,
        unit: '×',
        met: met(quietRatio?.median, (v) => v >= GOALS.readsOverRedis),
        alsoUnderWrites: busyRatio,
      },
    ];
  });
  return {
    suite: 'kvs2-in-process-reads',
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    commit: treeCommit(REPO_DIR),
    machine: {
      ...machine,
      loadAverageAtEnd: loadavg()
        .map((l) => l.toFixed(2))
        .join(' '),
    },
    tools,
    options: { ...options, multiGetKeys: MULTI_GET_KEYS, warmUpSec: WARM_UP_SEC },
    placement: placement(),
    method: {
      latency:
        'process.hrtime.bigint() before and after every call, in the measured process; every call of the window kept, nearest-rank percentiles (no histogram)',
      loop: 'one loop on the main thread; it yields to the event loop (setImmediate) after each 1 ms of calls, where the replica applies what Kafka delivered; calls/s is over the whole window, turns included; no call latency includes them. The other measured process is stopped (SIGSTOP) during each window, so that a window measures one reader on its core; the replica, stopped through the co-located windows, catches up with the node before each of its own',
      keys: `reads pick from ${(1 << 17).toLocaleString('en-US')} keys drawn uniformly at random from all the loaded keys, built before the window (getMany: 100 of those a call)`,
      writer: `kcat (acks=all, murmur2 as kvs2) fed by a pacer: overwrites of random loaded keys with new ${options.valueBytes} B values at --writes-per-second; the node and the replica both apply them`,
      comparisons:
        'reads/s ratios are taken repetition by repetition against Redis GET measured in the same repetition with no writes running (redis-benchmark, as the suite runs it); gRPC Get is ghz on the node, as the suite runs it',
    },
    setup,
    timerFloorNs,
    writer: { target: options.writesPerSecond, handedToKcatPerSec: writerRate },
    underWrites,
    quiet: {
      readers: perReader(quiet),
      redisGet: sampleSummary(repetitions.map((r) => r.quiet.redis)),
      grpcGet: sampleSummary(repetitions.map((r) => r.quiet.grpc)),
    },
    ratios,
    goals,
    repetitions,
  };
}

/** Which core runs what; the measured processes follow --probe-core (all their threads), the writer --writer-core. */
function placement() {
  const probes = 'both measured processes (the replica probe and the co-located probe, all their threads)';
  const onServer = ['the Kafka broker', 'the kvs2 node', 'redis-server'];
  const onClient = ['redis-benchmark', 'ghz'];
  const writer = ['this script (with the writer pacer)', 'kcat (the writer)'];
  (options.writerCore === SERVER_CORE ? onServer : onClient).push(...writer);
  (options.probeCore === SERVER_CORE ? onServer : onClient).push(probes);
  return {
    serverCore: SERVER_CORE,
    clientCore: CLIENT_CORE,
    probeCore: options.probeCore,
    onServerCore: onServer.join(', '),
    onClientCore: onClient.join(', '),
    writerCore: options.writerCore,
    convention:
      options.probeCore === SERVER_CORE && options.writerCore === CLIENT_CORE
        ? "the suite's (measured process with the servers)"
        : options.probeCore === CLIENT_CORE && options.writerCore === SERVER_CORE
          ? 'the measured processes alone on the client core during their windows (--probe-core, --writer-core)'
          : "not the suite's: --probe-core, --writer-core",
  };
}

type Report = ReturnType<typeof buildReport>;

const num = (n: number | null | undefined, digits = 0): string =>
  n === null || n === undefined || !Number.isFinite(n)
    ? '–'
    : n.toLocaleString('en-US', { maximumFractionDigits: digits });
const range = (s: Spread | undefined, digits = 0): string =>
  s === null || s === undefined ? '–' : `${num(s.median, digits)} (${num(s.min, digits)}–${num(s.max, digits)})`;

function renderMarkdown(report: Report): string {
  const o = report.options;
  const writes = `${o.writesPerSecond.toLocaleString('en-US')} writes/s`;
  const out: string[] = [
    `# In-process reads (issue 17): ${report.startedAt}`,
    '',
    `${o.keys.toLocaleString('en-US')} keys of 16 B with ${o.valueBytes} B values on one Kafka broker; ${o.repetitions} ` +
      `repetitions of ${o.duration} s windows after a warm-up, the order reversed every other repetition; median ` +
      `(min–max) of the repetitions. Goals are judged on the median.`,
    '',
    machineLine(report.machine, report.tools),
    '',
    `Pinning (${report.placement.convention}): core ${SERVER_CORE} runs ${report.placement.onServerCore}; core ${CLIENT_CORE} runs ${report.placement.onClientCore}.`,
    '',
    `Method: latency by ${report.method.latency}. The loop: ${report.method.loop}. Keys: ${report.method.keys}. ` +
      `Writer: ${report.method.writer}. The clock's own floor in the probe (two back-to-back reads): p50 ` +
      `${num(report.timerFloorNs.p50)} ns, p99 ${num(report.timerFloorNs.p99)} ns; it is inside every figure below.`,
    '',
    '## Goals',
    '',
    '| Reader | Goal | Measured | Met |',
    '| --- | --- | --- | --- |',
    ...report.goals.map((g) => {
      const digits = g.unit === 'µs' ? 1 : g.unit === 'ms' ? 3 : 1;
      const also = 'alsoUnderWrites' in g ? `; under ${writes}: ${range(g.alsoUnderWrites, 1)}×` : '';
      return `| ${READER_LABEL[g.reader]} | ${g.goal} | ${range(g.measured, digits)} ${g.unit}${also} | ${g.met === null ? '–' : g.met ? 'met' : 'not met'} |`;
    }),
    '',
    `## Latency under ${writes}`,
    '',
    `The writer handed kcat ${range(report.writer.handedToKcatPerSec)} records/s; "applied/s" is what the replica (or ` +
      'the node, for the co-located reader) applied during the window. "In calls %": the share of the window spent ' +
      'inside the timed calls; "process CPU %": the probe\'s CPU time (all threads) over the window. A loop that has its ' +
      'core shows the CPU near 100: well under it, other work on the core (or the host) took the core away.',
    '',
    '| Reader | Call | calls/s | p50 µs | p99 µs | p99.9 µs | max µs | applied/s | GCs in window | longest GC ms | in calls % | process CPU % |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const name of READERS) {
    const u = report.underWrites[name];
    if (u === undefined) continue;
    for (const [call, s] of [
      ['get', u.get],
      [`getMany (${MULTI_GET_KEYS} keys)`, u.getMany],
    ] as const) {
      out.push(
        `| ${READER_LABEL[name]} | ${call} | ${range(s.callsPerSec)} | ${range(s.p50Us, 1)} | ${range(s.p99Us, 1)} | ` +
          `${range(s.p999Us, 1)} | ${range(s.maxUs, 0)} | ${range(s.appliedPerSec)} | ${range(s.gcCount)} | ${range(s.gcMaxMs, 1)} | ${range(s.inCallsPercent)} | ${range(s.cpuPercent)} |`,
      );
    }
  }
  const q = report.quiet;
  const r = report.ratios;
  out.push(
    '',
    '## Reads per second',
    '',
    `In-process: the \`get\` loop above without per-call clock reads, one thread. Redis and gRPC: ${o.inFlight} in flight from the client core, no writes running.`,
    '',
    `| Reader | reads/s, no writes | reads/s under ${writes} | under writes ÷ no writes | ÷ Redis GET (no writes) | ÷ gRPC Get (no writes) | p50 ms | p99 ms | server CPU s/1k calls |`,
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...READERS.map(
      (name) =>
        `| ${READER_LABEL[name]} | ${range(q.readers[name]?.callsPerSec)} | ${range(report.underWrites[name]?.getLoop.callsPerSec)} | ` +
        `${range(r[name]?.keptUnderWrites, 2)} | ${range(r[name]?.quietOverRedis, 1)} (under writes ${range(r[name]?.underWritesOverRedis, 1)}) | ` +
        `${range(r[name]?.quietOverGrpc, 1)} | – | – | – |`,
    ),
    `| Redis GET, ${o.inFlight} in flight (redis-benchmark) | ${range(q.redisGet.callsPerSec)} | – | – | 1 | – | ${range(q.redisGet.p50Ms, 3)} | ${range(q.redisGet.p99Ms, 3)} | ${range(q.redisGet.serverCpuSecPer1kOps, 3)} |`,
    `| kvs2 gRPC Get, ${o.inFlight} in flight (ghz, the node) | ${range(q.grpcGet.callsPerSec)} | – | – | – | 1 | ${range(q.grpcGet.p50Ms, 3)} | ${range(q.grpcGet.p99Ms, 3)} | ${range(q.grpcGet.serverCpuSecPer1kOps, 3)} |`,
    '',
    `Client core busy during Redis ${range(q.redisGet.clientCoreBusyPercent)} %, during gRPC ${range(q.grpcGet.clientCoreBusyPercent)} % ` +
      '(near 100: the load generator set the pace). Errors: Redis ' +
      `${q.redisGet.errors}, gRPC ${q.grpcGet.errors}. Set-up: topic loaded by kcat in ${num(report.setup.kcatLoadSec, 1)} s; ` +
      `opened (a replica: and caught up with the topic), s: ${READERS.map((name) => `${name} ${num(report.setup.openSec[name], 2)}`).join(', ')}. ` +
      `Worker threads placed (taskset -p -c on the tid named kvs2-replica): ${
        Object.entries(report.setup.workerThreads)
          .map(([name, t]) => `${name}: ${t?.affinity}`)
          .join('; ') || 'none'
      }.` +
      (o.helpersOtherCore
        ? ` Every other thread of each probe but its main thread (V8Worker, libuv-worker, ...) moved to core ${OTHER_CORE} (--helpers-other-core).`
        : ''),
    '',
  );
  return out.join('\n');
}

let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write(`[in-process-reads] ${signal}: stopping everything it started\n`);
    void stopAll().finally(() => process.exit(130));
  });
}

try {
  await main();
} catch (error) {
  process.stderr.write(
    `[in-process-reads] failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
} finally {
  await stopAll();
  if (options.keepData) log(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
}
// Nothing of the run may keep the process alive (a client socket, a timer).
process.exit(process.exitCode ?? 0);
