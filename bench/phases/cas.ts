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

/** A system under test and the client the generator uses on it. */
interface CasSystem {
  readonly system: GrpcSystem;
  readonly kind: CasLoadSpec['system'];
}

/**
 * Scenario `cas`: read-modify-write increments on kvs2's embedded log, on kvs2 over one Kafka broker and on
 * etcd, each a fresh system with no data loaded (every run's counters start absent). Per worker count: one
 * counter per worker (uncontended), then every worker on a few shared counters (contended).
 *
 * All the systems stay up together on the server core (idle but for the one measured), and each point's
 * repetitions alternate between them, in turn forward and backward (kvs2, etcd, kvs2-kafka, then kvs2-kafka,
 * etcd, kvs2, ...), like the paired Get: a slow minute of the host weighs on every side of a ratio alike.
 */
export async function casPhase(ctx: RunContext): Promise<void> {
  const systems: CasSystem[] = [];
  const stops: Array<() => Promise<void>> = [];
  try {
    ctx.log('starting kvs2 (embedded log) for conditional writes');
    const node = await startKvs2({ name: 'kvs2', dataDir: ctx.dir('kvs2-cas'), logFile: ctx.logFile('kvs2-cas') });
    stops.push(() => node.stop());
    ctx.results.systems.kvs2 = { durability: node.durability };
    systems.push({ system: node, kind: 'kvs2' });
    if (ctx.peers.has('etcd')) {
      try {
        ctx.log('starting etcd for conditional writes');
        const etcd = await startEtcd(ctx.dir('etcd-cas'), ctx.logFile('etcd-cas'));
        stops.push(() => etcd.stop());
        ctx.results.systems.etcd = { durability: etcd.durability };
        systems.push({ system: etcd, kind: 'etcd' });
      } catch (error) {
        ctx.skip('cas on etcd', error instanceof Error ? error.message : String(error));
      }
    }
    if (ctx.peers.has('kafka')) {
      try {
        ctx.log('starting Kafka (one broker) and kvs2 on it for conditional writes');
        const cluster = await kafkaUp(ctx.dir('kafka-cas-state'));
        stops.push(() => cluster.down());
        ctx.results.systems.kafka = { durability: 'acks=all, 1 broker, no fsync per write (Kafka default)' };
        const onKafka = await startKvs2({
          name: 'kvs2-kafka',
          dataDir: ctx.dir('kvs2-kafka-cas'),
          logFile: ctx.logFile('kvs2-kafka-cas'),
          kafka: { brokers: cluster.brokers, topic: 'kvs2-cas', extraPids: () => cluster.brokerPids() },
        });
        stops.push(() => onKafka.stop());
        ctx.results.systems['kvs2-kafka'] = {
          durability: onKafka.durability,
          notes: 'server CPU counts kvs2 and the broker',
        };
        systems.push({ system: onKafka, kind: 'kvs2' });
      } catch (error) {
        ctx.skip('cas on kvs2-kafka', error instanceof Error ? error.message : String(error));
      }
    }
    for (const shape of casShapes(ctx.plan)) await casShapePoints(ctx, systems, shape.concurrency, shape.keys);
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => {});
  }
}

/** Every worker count, uncontended then on each number of shared counters (fewer than the workers). */
export function casShapes(plan: RunContext['plan']): Array<{ concurrency: number; keys: number }> {
  return plan.casConcurrency.flatMap((concurrency) => [
    { concurrency, keys: concurrency },
    ...plan.casSharedKeys.filter((keys) => keys < concurrency).map((keys) => ({ concurrency, keys })),
  ]);
}

/** One shape on every system, repetitions alternated; records a point per system, then checks them. */
async function casShapePoints(
  ctx: RunContext,
  systems: readonly CasSystem[],
  concurrency: number,
  keys: number,
): Promise<void> {
  const label = (s: CasSystem) =>
    `cas ${s.system.name} ${concurrency} workers on ${keys} counter${keys === 1 ? '' : 's'}`;
  const samples = new Map<CasSystem, CasSample[]>(systems.map((s) => [s, []]));
  const failed = new Set<CasSystem>();
  for (let rep = 0; rep < ctx.plan.repetitions; rep++) {
    const order = rep % 2 === 0 ? systems : [...systems].reverse();
    for (const s of order) {
      if (failed.has(s)) continue;
      try {
        samples.get(s)?.push(await casSample(ctx, s, concurrency, keys, rep === 0 ? ctx.plan.warmUpSec : 0));
      } catch (error) {
        if (error instanceof CasCheckError) throw error;
        failed.add(s);
        ctx.skip(label(s), error instanceof Error ? error.message : String(error));
      }
    }
  }
  for (const s of systems) {
    const mine = samples.get(s) ?? [];
    if (failed.has(s) || mine.length === 0) continue;
    const point = casPointOf(s, concurrency, keys, mine);
    ctx.results.cas ??= [];
    ctx.results.cas.push(point);
    const f = (n: number | undefined, digits = 2) => (n === undefined ? '-' : n.toFixed(digits));
    ctx.log(
      `${label(s)}: ${f(point.incrementsPerSec?.median, 0)} increments/s, ${f(point.conflictsPerSuccess?.median)} ` +
        `conflicts per success, conditional call p50 ${f(point.p50Ms?.median)} ms p99 ${f(point.p99Ms?.median)} ms, ` +
        `read p50 ${f(point.readP50Ms?.median)} ms` +
        (point.errors ? `, ${point.errors} errors (${point.samples.find((x) => x.firstError)?.firstError})` : ''),
    );
    if (!point.checked) {
      const bad = mine.filter((x) => !x.check.ok).map((x) => `${x.check.found} found, ${x.check.expected} applied`);
      throw new CasCheckError(`${label(s)}: the counters do not add up to the applied increments (${bad.join('; ')})`);
    }
  }
}

let runCounter = 0;

/** One repetition: a generator process (after a warm-up when asked), its counters checked. */
async function casSample(
  ctx: RunContext,
  { system, kind }: CasSystem,
  concurrency: number,
  keys: number,
  warmUpSec: number,
): Promise<CasSample> {
  const spec: CasLoadSpec = {
    system: kind,
    target: system.target,
    ...(kind === 'etcd' ? { etcdProto: treePath('bench/proto/etcd-kv.proto') } : {}),
    connections: Math.min(concurrency, MAX_CONNECTIONS),
    concurrency,
    keys,
    durationSec: ctx.plan.durationSec,
    warmUpSec,
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
  return {
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
    ...(r.successes > 0
      ? { serverCpuSecPer1kIncrementsByProcess: output.serverCpuSecByProcess.map((cpu) => (cpu / r.successes) * 1000) }
      : {}),
    coreBusyPercent: output.coreBusyPercent,
    loadAverage1m: Math.round((loadavg()[0] ?? 0) * 100) / 100,
    check: { ok: r.check.ok, expected: r.check.expected, found: r.check.found },
  };
}

function casPointOf({ system, kind }: CasSystem, concurrency: number, keys: number, samples: CasSample[]): CasPoint {
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
    connections: Math.min(concurrency, MAX_CONNECTIONS),
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
