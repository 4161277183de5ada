import { readFileSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { CLIENT_CORE, run } from './processes.js';
import type { LoadShape, RawResult } from './results.js';
import { percentile } from './stats.js';

/** ghz from `go install` (bench/setup.sh); GOBIN/GOPATH are honoured like Go does. */
export function ghzPath(): string {
  const gopath = process.env.GOPATH?.split(':')[0] ?? join(homedir(), 'go');
  return process.env.GOBIN ? join(process.env.GOBIN, 'ghz') : join(gopath, 'bin', 'ghz');
}

export interface GhzCall {
  readonly target: string;
  /** .proto file that defines the service. */
  readonly proto: string;
  /** package.Service/Method */
  readonly call: string;
  /** JSON array of request messages, sent round robin. */
  readonly dataFile: string;
  /** TLS, trusting this PEM CA file; absent: plaintext. */
  readonly tlsCaFile?: string;
}

interface GhzReport {
  total: number;
  count: number;
  details?: Array<{ latency: number; status: string; error?: string }>;
  statusCodeDistribution?: Record<string, number>;
  errorDistribution?: Record<string, number>;
}

/**
 * One ghz run on the client core: closed loop (`concurrency` workers, each waits for its reply) or,
 * with `rps`, a constant request rate spread over the workers. Calls still in flight when the time is
 * up are left out (--duration-stop ignore). Latencies are ghz's per-call times.
 */
export async function runGhz(call: GhzCall, load: LoadShape, outFile: string): Promise<RawResult> {
  const connections = Math.min(load.concurrency, 4);
  const args = [
    ...(call.tlsCaFile === undefined ? ['--insecure'] : ['--cacert', call.tlsCaFile]),
    '--proto',
    call.proto,
    '--call',
    call.call,
    '--data-file',
    call.dataFile,
    '--concurrency',
    String(load.concurrency),
    '--connections',
    String(connections),
    '--duration',
    `${load.durationSec}s`,
    '--duration-stop',
    'ignore',
    '--timeout',
    '10s',
    '--cpus',
    '1',
    '--format',
    'json',
    '--output',
    outFile,
  ];
  if (load.rps !== undefined) args.push('--rps', String(Math.round(load.rps)));
  args.push(call.target);
  const result = await run(ghzPath(), args, { core: CLIENT_CORE, timeoutMs: (load.durationSec + 60) * 1000 });
  if (result.code !== 0) {
    throw new Error(`ghz ${call.call} exited with ${result.code}: ${(result.stderr || result.stdout).trim()}`);
  }
  const report = JSON.parse(readFileSync(outFile, 'utf8')) as GhzReport;
  rmSync(outFile, { force: true });
  const okLatencies: number[] = [];
  let errors = 0;
  for (const detail of report.details ?? []) {
    if (detail.status === 'OK') okLatencies.push(detail.latency / 1e6);
    else errors++;
  }
  okLatencies.sort((a, b) => a - b);
  const seconds = report.total / 1e9;
  const firstError = Object.keys(report.errorDistribution ?? {})[0];
  return {
    ops: okLatencies.length,
    seconds,
    errors,
    ...(firstError === undefined ? {} : { firstError }),
    latencyMs: {
      mean: okLatencies.length ? okLatencies.reduce((a, b) => a + b, 0) / okLatencies.length : null,
      p50: percentile(okLatencies, 50),
      p99: percentile(okLatencies, 99),
      p999: percentile(okLatencies, 99.9),
    },
  };
}
