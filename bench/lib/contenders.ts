import { join } from 'node:path';
import type { GrpcSystem, RedisSystem } from '../systems/system.js';
import { runGhz } from './ghz.js';
import type { Contender } from './measure.js';
import { calibrateRedisBenchmark, type RedisCall, runRedisBenchmark } from './redis-benchmark.js';
import type { LoadShape } from './results.js';

export interface GhzContenderOptions {
  readonly name: string;
  readonly system: GrpcSystem;
  readonly proto: string;
  readonly call: string;
  readonly dataFile: string;
  readonly workDir: string;
  readonly warmUpSec: number;
}

/** A gRPC system driven by ghz. */
export function ghzContender(options: GhzContenderOptions): Contender {
  const call = { target: options.system.target, proto: options.proto, call: options.call, dataFile: options.dataFile };
  return {
    name: options.name,
    system: options.system.name,
    generator: 'ghz',
    supportsRate: true,
    serverPids: () => options.system.serverPids(),
    warmUp: async (load: LoadShape, runId: string) => {
      if (options.warmUpSec <= 0) return;
      await runGhz(call, { ...load, durationSec: options.warmUpSec }, join(options.workDir, `${runId}.json`));
    },
    run: (load: LoadShape, runId: string) => runGhz(call, load, join(options.workDir, `${runId}.json`)),
  };
}

export interface RedisContenderOptions {
  readonly name: string;
  readonly system: RedisSystem;
  readonly call: Omit<RedisCall, 'port'>;
}

/** Redis driven by redis-benchmark (closed loop only). */
export function redisContender(options: RedisContenderOptions): Contender {
  const call: RedisCall = { ...options.call, port: options.system.port };
  const requestsFor = new Map<number, number>();
  return {
    name: options.name,
    system: options.system.name,
    generator: 'redis-benchmark',
    supportsRate: false,
    serverPids: () => options.system.serverPids(),
    warmUp: async (load: LoadShape) => {
      requestsFor.set(load.concurrency, await calibrateRedisBenchmark(call, load));
    },
    run: (load: LoadShape) => {
      const requests = requestsFor.get(load.concurrency);
      if (requests === undefined) throw new Error('redis-benchmark run before its calibration');
      return runRedisBenchmark(call, load, requests);
    },
  };
}
