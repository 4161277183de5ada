import { loadavg } from 'node:os';
import { coreBusyPercent, coreTimes, cpuSeconds } from './processes.js';
import type { LoadShape, Point, RawResult, Sample, Scenario } from './results.js';
import { spread } from './stats.js';

/** Something that can put one kind of load on one system: a system and the call used to ask it. */
export interface Contender {
  /** e.g. `kvs2`, `etcd-serializable`, `redis`. */
  readonly name: string;
  readonly system: string;
  readonly generator: 'ghz' | 'redis-benchmark';
  readonly supportsRate: boolean;
  serverPids(): number[];
  /** Runs before the measured repetitions of a point, unmeasured (JIT, caches, calibration). */
  warmUp(load: LoadShape, runId: string): Promise<void>;
  run(load: LoadShape, runId: string): Promise<RawResult>;
}

/** One run, with the server's CPU time and the cores' busy time around it. */
export async function measure(contender: Contender, load: LoadShape, runId: string): Promise<Sample> {
  const pids = contender.serverPids();
  const cpuBefore = pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  const coresBefore = coreTimes();
  const raw = await contender.run(load, runId);
  const coresAfter = coreTimes();
  const cpuAfter = pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  const opsPerSec = raw.seconds > 0 ? raw.ops / raw.seconds : 0;
  return {
    ...raw,
    opsPerSec,
    serverCpuSecPer1kOps: raw.ops > 0 ? ((cpuAfter - cpuBefore) / raw.ops) * 1000 : null,
    coreBusyPercent: coreBusyPercent(coresBefore, coresAfter),
    loadAverage1m: Math.round((loadavg()[0] ?? 0) * 100) / 100,
  };
}

export interface PointSpec {
  readonly scenario: Scenario;
  readonly contender: Contender;
  readonly valueBytes: number;
  readonly keysPerCall: number;
  readonly load: LoadShape;
  readonly repetitions: number;
}

/** Runs a point `repetitions` times and summarises it: median with min and max. */
export async function measurePoint(spec: PointSpec, runId: string, onSample?: (s: Sample) => void): Promise<Point> {
  const samples: Sample[] = [];
  await spec.contender.warmUp(spec.load, `${runId}-warmup`);
  for (let rep = 0; rep < spec.repetitions; rep++) {
    const sample = await measure(spec.contender, spec.load, `${runId}-${rep}`);
    onSample?.(sample);
    samples.push(sample);
  }
  return {
    scenario: spec.scenario,
    contender: spec.contender.name,
    system: spec.contender.system,
    valueBytes: spec.valueBytes,
    keysPerCall: spec.keysPerCall,
    mode: spec.load.rps === undefined ? 'closed' : 'rate',
    concurrency: spec.load.concurrency,
    targetRps: spec.load.rps ?? null,
    generator: spec.contender.generator,
    samples,
    opsPerSec: spread(samples.map((s) => s.opsPerSec)),
    p50Ms: spread(samples.map((s) => s.latencyMs.p50)),
    p99Ms: spread(samples.map((s) => s.latencyMs.p99)),
    p999Ms: spread(samples.map((s) => s.latencyMs.p999)),
    serverCpuSecPer1kOps: spread(samples.map((s) => s.serverCpuSecPer1kOps)),
    errors: samples.reduce((sum, s) => sum + s.errors, 0),
  };
}

/**
 * Two contenders at the same load, their repetitions alternated and which goes first alternating too
 * (a b, b a, a b, ...), after a warm-up of each: a slow minute of the host weighs on both alike, and a
 * trend within a pair favours neither. Returns the samples pair by pair, `a`'s first.
 */
export async function measureAlternated(
  a: Contender,
  b: Contender,
  load: LoadShape,
  runId: string,
  repetitions: number,
): Promise<Array<[Sample, Sample]>> {
  await a.warmUp(load, `${runId}-${a.name}-warm`);
  await b.warmUp(load, `${runId}-${b.name}-warm`);
  const pairs: Array<[Sample, Sample]> = [];
  for (let rep = 0; rep < repetitions; rep++) {
    if (rep % 2 === 0) {
      const first = await measure(a, load, `${runId}-${a.name}-${rep}`);
      pairs.push([first, await measure(b, load, `${runId}-${b.name}-${rep}`)]);
    } else {
      const first = await measure(b, load, `${runId}-${b.name}-${rep}`);
      pairs.push([await measure(a, load, `${runId}-${a.name}-${rep}`), first]);
    }
  }
  return pairs;
}
