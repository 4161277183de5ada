/**
 * The conditional-write load generator (ghz cannot read, then write what it read): one process, started by
 * the suite on the client core, runs a warm-up and then one measured run of read-modify-write increments
 * against kvs2 or etcd, and prints one JSON line (CasLoadOutput) on stdout.
 *
 *   node dist/bench/lib/cas-load.js '<CasLoadSpec as JSON>'
 */
import { type CasTarget, etcdCasTarget, kvs2CasTarget } from './cas-targets.js';
import { type CasRunResult, runCasWorkload } from './cas-workload.js';
import { coreBusyPercent, coreTimes, cpuSeconds } from './processes.js';

export interface CasLoadSpec {
  readonly system: 'kvs2' | 'etcd';
  readonly target: string;
  /** etcd only: bench/proto/etcd-kv.proto. */
  readonly etcdProto?: string;
  readonly connections: number;
  readonly concurrency: number;
  readonly keys: number;
  readonly durationSec: number;
  /** Unmeasured run first, on counters of their own (0: none). */
  readonly warmUpSec: number;
  /** Unique per run: the counters start absent. */
  readonly keyPrefix: string;
  /** The server's processes, whose CPU time over the measured run is reported. */
  readonly serverPids: readonly number[];
}

export interface CasLoadOutput {
  readonly run: CasRunResult;
  readonly warmUp: CasRunResult | null;
  /** User + system seconds of the server's processes over the measured run (the final check included). */
  readonly serverCpuSec: number;
  /** The same for each of `serverPids`, in their order (kvs2 on Kafka: the node, then the broker). */
  readonly serverCpuSecByProcess: number[];
  readonly coreBusyPercent: number[];
}

function targetOf(spec: CasLoadSpec): CasTarget {
  if (spec.system === 'kvs2') return kvs2CasTarget(spec.target, spec.connections);
  if (spec.etcdProto === undefined) throw new Error('etcd needs etcdProto');
  return etcdCasTarget(spec.target, spec.connections, spec.etcdProto);
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '') as CasLoadSpec;
  const target = targetOf(spec);
  try {
    const workload = { concurrency: spec.concurrency, keys: spec.keys, durationSec: spec.durationSec };
    const warmUp =
      spec.warmUpSec > 0
        ? await runCasWorkload(target, { ...workload, durationSec: spec.warmUpSec, keyPrefix: `${spec.keyPrefix}w:` })
        : null;
    const cpuBefore = spec.serverPids.map((pid) => cpuSeconds(pid));
    const coresBefore = coreTimes();
    const run = await runCasWorkload(target, { ...workload, keyPrefix: `${spec.keyPrefix}m:` });
    const byProcess = spec.serverPids.map((pid, i) => cpuSeconds(pid) - (cpuBefore[i] ?? 0));
    const output: CasLoadOutput = {
      run,
      warmUp,
      serverCpuSec: byProcess.reduce((sum, cpu) => sum + cpu, 0),
      serverCpuSecByProcess: byProcess,
      coreBusyPercent: coreBusyPercent(coresBefore, coreTimes()),
    };
    process.stdout.write(`${JSON.stringify(output)}\n`);
  } finally {
    target.close();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`cas-load failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
