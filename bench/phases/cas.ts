import { loadavg } from 'node:os';
import type { RunContext } from '../context.js';
import type { CasLoadOutput, CasLoadSpec } from '../lib/cas-load.js';
import { CLIENT_CORE, run } from '../lib/processes.js';
import type { CasPoint, CasSample } from '../lib/results.js';
import { spread } from '../lib/stats.js';
import { treePath } from '../lib/tree.js';
import { startEtcd } from '../systems/etcd.js';
import { kafkaUp } from '../systems/kafka.js';
import { startKvs2 } from '../systems/kvs2.js';
import type { GrpcSystem } from '../systems/system.js';

/** Counters that did not add up: a lost (or invented) update. The run fails, whatever else it measured. */
export class CasCheckError extends Error {
  override readonly name = 'CasCheckError';
}

/** Connections each generator opens, as ghz does for the other points (up to 4). */
const MAX_CONNECTIONS = 4;

/**
 * Scenario `cas`: read-modify-write increments on kvs2's embedded log, on kvs2 over one Kafka broker and on
 * etcd, each a fresh system with no data loaded (every run's counters start absent). Per system and worker
 * count: one counter per worker (uncontended), then every worker on a few shared counters (contended).
 */
export async function casPhase(ctx: RunContext): Promise<void> {
  const systems: Array<[string, () => Promise<void>]> = [['kvs2', () => casOnKvs2(ctx)]];
  if (ctx.peers.has('etcd')) systems.push(['etcd', () => casOnEtcd(ctx)]);
  if (ctx.peers.has('kafka')) systems.push(['kvs2-kafka', () => casOnKafka(ctx)]);
  for (const [name, measure] of systems) {
    try {
      await measure();
    } catch (error) {
      if (error instanceof CasCheckError) throw error;
      ctx.skip(`cas on ${name}`, error instanceof Error ? (error.stack ?? error.message) : String(error));
    }
  }
}

async function casOnKvs2(ctx: RunContext): Promise<void> {
  ctx.log('starting kvs2 (embedded log) for conditional writes');
  const node = await startKvs2({ name: 'kvs2', dataDir: ctx.dir('kvs2-cas'), logFile: ctx.logFile('kvs2-cas') });
  ctx.results.systems.kvs2 = { durability: node.durability };
  try {
    await casPoints(ctx, node, 'kvs2');
  } finally {
    await node.stop();
  }
}

async function casOnEtcd(ctx: RunContext): Promise<void> {
  ctx.log('starting etcd for conditional writes');
  const etcd = await startEtcd(ctx.dir('etcd-cas'), ctx.logFile('etcd-cas'));
  ctx.results.systems.etcd = { durability: etcd.durability };
  try {
    await casPoints(ctx, etcd, 'etcd');
  } finally {
    await etcd.stop();
  }
}

async function casOnKafka(ctx: RunContext): Promise<void> {
  ctx.log('starting Kafka (one broker) for conditional writes');
  const cluster = await kafkaUp(ctx.dir('kafka-cas-state'));
  try {
    ctx.results.systems.kafka = { durability: 'acks=all, 1 broker, no fsync per write (Kafka default)' };
    const node = await startKvs2({
      name: 'kvs2-kafka',
      dataDir: ctx.dir('kvs2-kafka-cas'),
      logFile: ctx.logFile('kvs2-kafka-cas'),
      kafka: { brokers: cluster.brokers, topic: 'kvs2-cas', extraPids: () => cluster.brokerPids() },
    });
    ctx.results.systems['kvs2-kafka'] = { durability: node.durability, notes: 'server CPU counts kvs2 and the broker' };
    try {
      await casPoints(ctx, node, 'kvs2');
    } finally {
      await node.stop();
    }
  } finally {
    ctx.log('stopping Kafka');
    await cluster.down();
  }
}

/** Every worker count, uncontended then on each number of shared counters (fewer than the workers). */
export function casShapes(plan: RunContext['plan']): Array<{ concurrency: number; keys: number }> {
  return plan.casConcurrency.flatMap((concurrency) => [
    { concurrency, keys: concurrency },
    ...plan.casSharedKeys.filter((keys) => keys < concurrency).map((keys) => ({ concurrency, keys })),
  ]);
}

async function casPoints(ctx: RunContext, system: GrpcSystem, kind: CasLoadSpec['system']): Promise<void> {
  for (const shape of casShapes(ctx.plan)) {
    const label = `cas ${system.name} ${shape.concurrency} workers on ${shape.keys} counter${shape.keys === 1 ? '' : 's'}`;
    let point: CasPoint;
    try {
      point = await casPoint(ctx, system, kind, shape.concurrency, shape.keys);
    } catch (error) {
      if (error instanceof CasCheckError) throw error;
      ctx.skip(label, error instanceof Error ? error.message : String(error));
      continue;
    }
    ctx.results.cas ??= [];
    ctx.results.cas.push(point);
    const f = (n: number | undefined, digits = 2) => (n === undefined ? '-' : n.toFixed(digits));
    ctx.log(
      `${label}: ${f(point.incrementsPerSec?.median, 0)} increments/s, ${f(point.conflictsPerSuccess?.median)} ` +
        `conflicts per success, conditional call p50 ${f(point.p50Ms?.median)} ms p99 ${f(point.p99Ms?.median)} ms, ` +
        `read p50 ${f(point.readP50Ms?.median)} ms` +
        (point.errors ? `, ${point.errors} errors (${point.samples.find((s) => s.firstError)?.firstError})` : ''),
    );
    if (!point.checked) {
      const bad = point.samples
        .filter((s) => !s.check.ok)
        .map((s) => `${s.check.found} found, ${s.check.expected} applied`);
      throw new CasCheckError(`${label}: the counters do not add up to the applied increments (${bad.join('; ')})`);
    }
  }
}

let runCounter = 0;

async function casPoint(
  ctx: RunContext,
  system: GrpcSystem,
  kind: CasLoadSpec['system'],
  concurrency: number,
  keys: number,
): Promise<CasPoint> {
  const connections = Math.min(concurrency, MAX_CONNECTIONS);
  const samples: CasSample[] = [];
  for (let rep = 0; rep < ctx.plan.repetitions; rep++) {
    const spec: CasLoadSpec = {
      system: kind,
      target: system.target,
      ...(kind === 'etcd' ? { etcdProto: treePath('bench/proto/etcd-kv.proto') } : {}),
      connections,
      concurrency,
      keys,
      durationSec: ctx.plan.durationSec,
      warmUpSec: rep === 0 ? ctx.plan.warmUpSec : 0,
      keyPrefix: `cas:${++runCounter}:`,
      serverPids: system.serverPids(),
    };
    const output = await runGenerator(spec);
    const r = output.run;
    if (output.warmUp && !output.warmUp.check.ok) {
      throw new CasCheckError(
        `${system.name} warm-up: the counters add up to ${output.warmUp.check.found}, ${output.warmUp.check.expected} applied`,
      );
    }
    samples.push({
      successes: r.successes,
      conflicts: r.conflicts,
      errors: r.errors,
      ...(r.firstError === undefined ? {} : { firstError: r.firstError }),
      seconds: r.seconds,
      incrementsPerSec: r.seconds > 0 ? r.successes / r.seconds : 0,
      conflictsPerSuccess: r.successes > 0 ? r.conflicts / r.successes : null,
      writeLatencyMs: r.writeLatencyMs,
      readLatencyMs: r.readLatencyMs,
      serverCpuSecPer1kIncrements: r.successes > 0 ? (output.serverCpuSec / r.successes) * 1000 : null,
      coreBusyPercent: output.coreBusyPercent,
      loadAverage1m: Math.round((loadavg()[0] ?? 0) * 100) / 100,
      check: { ok: r.check.ok, expected: r.check.expected, found: r.check.found },
    });
  }
  return {
    system: system.name,
    contended: keys < concurrency,
    concurrency,
    keys,
    read:
      kind === 'etcd'
        ? 'Range, serializable (reads the applied state, which holds every answered Txn)'
        : "Get, CONSISTENCY_AT_LEAST the token of the worker's last Set reply",
    write:
      kind === 'etcd'
        ? 'Txn: compare mod_revision = the one read (0: absent), success put, failure range'
        : 'Set with CONDITION_VERSION (CONDITION_ABSENT for the first increment)',
    connections,
    samples,
    incrementsPerSec: spread(samples.map((s) => s.incrementsPerSec)),
    conflictsPerSuccess: spread(samples.map((s) => s.conflictsPerSuccess)),
    p50Ms: spread(samples.map((s) => s.writeLatencyMs.p50)),
    p99Ms: spread(samples.map((s) => s.writeLatencyMs.p99)),
    p999Ms: spread(samples.map((s) => s.writeLatencyMs.p999)),
    readP50Ms: spread(samples.map((s) => s.readLatencyMs.p50)),
    readP99Ms: spread(samples.map((s) => s.readLatencyMs.p99)),
    serverCpuSecPer1kIncrements: spread(samples.map((s) => s.serverCpuSecPer1kIncrements)),
    errors: samples.reduce((sum, s) => sum + s.errors, 0),
    checked: samples.every((s) => s.check.ok),
  };
}

/** One generator process on the client core, like ghz; bounded well past its run and its final reads. */
async function runGenerator(spec: CasLoadSpec): Promise<CasLoadOutput> {
  const result = await run(process.execPath, [treePath('dist/bench/lib/cas-load.js'), JSON.stringify(spec)], {
    core: CLIENT_CORE,
    timeoutMs: (spec.warmUpSec + spec.durationSec + 120) * 1000,
  });
  const line = result.stdout.trim().split('\n').pop() ?? '';
  if (result.code !== 0 || line === '') {
    throw new Error(
      `the cas generator exited with ${result.code}: ${result.stderr.trim().split('\n').slice(-5).join(' ')}`,
    );
  }
  return JSON.parse(line) as CasLoadOutput;
}
