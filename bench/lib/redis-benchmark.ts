import { CLIENT_CORE, runChecked } from './processes.js';
import type { LoadShape, RawResult } from './results.js';

export interface RedisCall {
  readonly port: number;
  /** Keys are `key:__rand_int__` over [0, keyspace): the suite's key format. */
  readonly keyspace: number;
  /** A built-in test (`get`, `set`) or a command line with __rand_int__ placeholders. */
  readonly test?: 'get' | 'set';
  readonly command?: readonly string[];
  readonly valueBytes: number;
}

/**
 * redis-benchmark on the client core, closed loop with `concurrency` connections. It runs a request
 * count, not a duration: `calibrate` (run during warm-up, not measured) sizes the count to last about
 * `durationSec`. It has no fixed-rate mode and reports no p99.9: those stay null.
 */
export async function calibrateRedisBenchmark(call: RedisCall, load: LoadShape): Promise<number> {
  const calibration = await once(call, load.concurrency, Math.max(1_000, 20 * load.concurrency));
  const rate = calibration.ops / calibration.seconds;
  return Math.max(1_000, Math.min(100_000_000, Math.round(rate * load.durationSec)));
}

export function runRedisBenchmark(call: RedisCall, load: LoadShape, requests: number): Promise<RawResult> {
  if (load.rps !== undefined) throw new Error('redis-benchmark has no fixed-rate mode');
  return once(call, load.concurrency, requests, load.durationSec * 5 + 60);
}

async function once(call: RedisCall, clients: number, requests: number, timeoutSec = 120): Promise<RawResult> {
  const args = [
    '-h',
    '127.0.0.1',
    '-p',
    String(call.port),
    '-c',
    String(clients),
    '-n',
    String(requests),
    '-r',
    String(call.keyspace),
    '-d',
    String(call.valueBytes),
    '--csv',
  ];
  if (call.test) args.push('-t', call.test);
  else args.push(...(call.command ?? []));
  const result = await runChecked('redis-benchmark', args, { core: CLIENT_CORE, timeoutMs: timeoutSec * 1000 });
  const row = result.stdout
    .trim()
    .split('\n')
    .find((line) => !line.startsWith('"test"'));
  if (row === undefined) throw new Error(`redis-benchmark printed no result: ${result.stdout}`);
  const cells = row.split('","').map((c) => c.replaceAll('"', ''));
  const number = (i: number): number => Number(cells[i]);
  const rps = number(1);
  return {
    ops: requests,
    seconds: requests / rps,
    errors: 0,
    latencyMs: { mean: number(2), p50: number(4), p99: number(6), p999: null },
  };
}
