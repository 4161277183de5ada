import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ghzData } from './lib/dataset.js';
import { measurePoint, type PointSpec } from './lib/measure.js';
import type { Point, Results } from './lib/results.js';
import type { PeerName, Plan, ScenarioName } from './plan.js';

/** Everything a phase needs: the plan, where to put files, the results so far, and logging. */
export class RunContext {
  readonly plan: Plan;
  readonly scenarios: ReadonlySet<ScenarioName>;
  readonly peers: ReadonlySet<PeerName>;
  readonly workDir: string;
  readonly results: Results;
  readonly profile: boolean;
  /** kvs2's best closed-loop rates in this run: fixed-rate points are fractions of them. */
  kvs2BestGetRate: number | null = null;
  kvs2BestMultiGetRate: number | null = null;
  #pointCounter = 0;

  constructor(options: {
    plan: Plan;
    scenarios: ReadonlySet<ScenarioName>;
    peers: ReadonlySet<PeerName>;
    workDir: string;
    results: Results;
    profile: boolean;
  }) {
    this.plan = options.plan;
    this.scenarios = options.scenarios;
    this.peers = options.peers;
    this.workDir = options.workDir;
    this.results = options.results;
    this.profile = options.profile;
  }

  log(message: string): void {
    const elapsed = ((Date.now() - Date.parse(this.results.startedAt)) / 1000).toFixed(0).padStart(5);
    process.stderr.write(`[bench ${elapsed}s] ${message}\n`);
  }

  dir(name: string): string {
    const path = join(this.workDir, name);
    mkdirSync(path, { recursive: true });
    return path;
  }

  logFile(name: string): string {
    return join(this.dir('logs'), `${name}.log`);
  }

  skip(what: string, why: string): void {
    this.log(`skipped ${what}: ${why}`);
    this.results.skipped.push({ what, why });
  }

  /** Request files for ghz, made once per data set. */
  dataFile(kind: DataKind, valueBytes: number): string {
    const keys = valueBytes === this.plan.valueBytes ? this.plan.keys : this.plan.largeKeys;
    const file = join(this.dir('requests'), `${kind}-${keys}-${valueBytes}.json`);
    if (existsSync(file)) return file;
    const messages = valueBytes > 256 ? 10_000 : 50_000;
    switch (kind) {
      case 'get':
        ghzData.kvs2Get(file, keys, messages);
        break;
      case 'multiget':
        ghzData.kvs2MultiGet(file, keys, 2_000, this.plan.multiGetKeys);
        break;
      case 'set':
        ghzData.kvs2Set(file, keys, messages, valueBytes);
        break;
      case 'write':
        ghzData.kvs2Write(
          file,
          keys,
          Math.ceil(messages / this.plan.writeMutations),
          this.plan.writeMutations,
          valueBytes,
        );
        break;
      case 'etcd-range-serializable':
        ghzData.etcdRange(file, keys, messages, true);
        break;
      case 'etcd-range-linearizable':
        ghzData.etcdRange(file, keys, messages, false);
        break;
      case 'etcd-range-batch':
        ghzData.etcdRangeBatch(file, keys, 2_000, this.plan.multiGetKeys);
        break;
      case 'etcd-put':
        ghzData.etcdPut(file, keys, messages, valueBytes);
        break;
    }
    return file;
  }

  /** Measures a point, records it, logs a one-line summary; a failure is recorded and skipped. */
  async point(spec: PointSpec): Promise<Point | null> {
    const id = `p${++this.#pointCounter}`;
    const shape =
      spec.load.rps === undefined ? `${spec.load.concurrency} in flight` : `${Math.round(spec.load.rps)}/s fixed`;
    const label = `${spec.scenario} ${spec.contender.name} ${spec.valueBytes}B ${shape}`;
    try {
      const point = await measurePoint(spec, id);
      this.results.points.push(point);
      const f = (n: number | undefined | null, digits = 2) => (n === undefined || n === null ? '-' : n.toFixed(digits));
      this.log(
        `${label}: ${f(point.opsPerSec?.median, 0)} calls/s, p50 ${f(point.p50Ms?.median)} ms, ` +
          `p99 ${f(point.p99Ms?.median)} ms, cpu ${f(point.serverCpuSecPer1kOps?.median, 3)} s/1k` +
          (point.errors ? `, ${point.errors} errors (${point.samples.find((s) => s.firstError)?.firstError})` : ''),
      );
      return point;
    } catch (error) {
      this.skip(label, error instanceof Error ? error.message : String(error));
      return null;
    }
  }
}

export type DataKind =
  | 'get'
  | 'multiget'
  | 'set'
  | 'write'
  | 'etcd-range-serializable'
  | 'etcd-range-linearizable'
  | 'etcd-range-batch'
  | 'etcd-put';
