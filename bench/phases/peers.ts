import { join } from 'node:path';
import type { RunContext } from '../context.js';
import { ghzContender, redisContender } from '../lib/contenders.js';
import { diskBytes } from '../lib/disk.js';
import { loadEtcd, loadRedis } from '../lib/loader.js';
import { rssBytes } from '../lib/processes.js';
import { treePath } from '../lib/tree.js';
import { closedPoints, getPoints, multiGetPoints, setPoints } from '../scenarios.js';
import { startEtcd } from '../systems/etcd.js';
import { type NoopStack, startNoop } from '../systems/noop.js';
import { type RedisPersistence, redisInfoMemory, startRedis } from '../systems/redis.js';
import { kvs2Contender, mib } from './kvs2.js';
import { perMillion, recordLoad, variantsOf } from './variants.js';

/**
 * The no-op gRPC server: the ceiling of kvs2's stack for every call. Then the same answers from node:http2
 * without grpc-js (system `http2`, main data only): the ceiling of Node's HTTP/2 itself.
 */
export async function noopPhase(ctx: RunContext): Promise<void> {
  await noopStackPhase(ctx, 'grpc-js');
  await noopStackPhase(ctx, 'http2');
}

async function noopStackPhase(ctx: RunContext, stack: NoopStack): Promise<void> {
  for (const variant of variantsOf(ctx)) {
    if (stack === 'http2' && !variant.main) continue;
    ctx.log(`starting the no-op server on ${stack} (${variant.label} data)`);
    const noop = await startNoop(ctx.logFile(`noop-${stack}-${variant.label}`), variant.valueBytes, stack);
    ctx.results.systems[noop.name] = { durability: noop.durability };
    const name = noop.name;
    try {
      const vb = variant.valueBytes;
      if (variant.main) {
        if (ctx.scenarios.has('get')) await getPoints(ctx, kvs2Contender(ctx, noop, name, 'Get', vb), vb);
        if (ctx.scenarios.has('multiget')) await multiGetPoints(ctx, kvs2Contender(ctx, noop, name, 'MultiGet', vb));
        if (ctx.scenarios.has('set')) await setPoints(ctx, kvs2Contender(ctx, noop, name, 'Set', vb), vb);
      } else {
        const at = [ctx.plan.largeConcurrency];
        if (ctx.scenarios.has('get')) await closedPoints(ctx, 'get', kvs2Contender(ctx, noop, name, 'Get', vb), vb, at);
      }
    } finally {
      await noop.stop();
    }
  }
}

/** etcd: Range (serializable and linearizable), Range over a key range, Put. */
export async function etcdPhase(ctx: RunContext): Promise<void> {
  for (const variant of variantsOf(ctx)) {
    const dataDir = ctx.dir(`etcd-${variant.label}`);
    ctx.log(`starting etcd (${variant.label} data)`);
    const etcd = await startEtcd(dataDir, ctx.logFile(`etcd-${variant.label}`));
    ctx.results.systems.etcd = { durability: etcd.durability };
    try {
      const load = await loadEtcd(etcd.target, variant.keys, variant.valueBytes);
      recordLoad(ctx, 'etcd', variant, load.seconds);
      if (variant.main && ctx.scenarios.has('memory')) {
        const rss = rssBytes(etcd.serverPids()[0] as number);
        const disk = diskBytes(dataDir);
        const db = diskBytes(join(dataDir, 'member', 'snap', 'db'));
        ctx.results.memory.push({
          system: 'etcd',
          keys: variant.keys,
          valueBytes: variant.valueBytes,
          rssBytes: rss,
          diskBytes: disk,
          details: { backendDbBytes: db, walAndSnapBytes: disk - db },
          rssBytesPerMillionKeys: perMillion(rss, variant.keys),
          diskBytesPerMillionKeys: perMillion(disk, variant.keys),
        });
        ctx.log(`etcd memory: RSS ${mib(rss)} MiB, disk ${mib(disk)} MiB (db ${mib(db)})`);
      }
      const contender = (name: string, call: string, kind: Parameters<RunContext['dataFile']>[0]) =>
        ghzContender({
          name,
          system: etcd,
          proto: treePath('bench/proto/etcd-kv.proto'),
          call: `etcdserverpb.KV/${call}`,
          dataFile: ctx.dataFile(kind, variant.valueBytes),
          workDir: ctx.dir('ghz'),
          warmUpSec: ctx.plan.warmUpSec,
        });
      const vb = variant.valueBytes;
      const serializable = contender('etcd-serializable', 'Range', 'etcd-range-serializable');
      const linearizable = contender('etcd-linearizable', 'Range', 'etcd-range-linearizable');
      const put = contender('etcd', 'Put', 'etcd-put');
      if (variant.main) {
        if (ctx.scenarios.has('get')) {
          await getPoints(ctx, serializable, vb);
          await getPoints(ctx, linearizable, vb);
        }
        if (ctx.scenarios.has('multiget')) {
          await multiGetPoints(ctx, contender('etcd-range', 'Range', 'etcd-range-batch'));
        }
        if (ctx.scenarios.has('set')) await setPoints(ctx, put, vb);
      } else {
        const at = [ctx.plan.largeConcurrency];
        if (ctx.scenarios.has('get')) await closedPoints(ctx, 'get', serializable, vb, at);
        if (ctx.scenarios.has('set')) await closedPoints(ctx, 'set', put, vb, at);
      }
    } finally {
      await etcd.stop();
    }
  }
}

/** Redis without persistence (reads, writes, memory), then with AOF fsync always (writes). */
export async function redisPhase(ctx: RunContext): Promise<void> {
  const modes: RedisPersistence[] = ctx.scenarios.has('set') ? ['none', 'aof-always'] : ['none'];
  for (const variant of variantsOf(ctx)) {
    for (const persistence of modes) {
      const name = persistence === 'none' ? 'redis' : 'redis-aof';
      const dataDir = ctx.dir(`${name}-${variant.label}`);
      ctx.log(`starting ${name} (${variant.label} data)`);
      const redis = await startRedis(dataDir, ctx.logFile(`${name}-${variant.label}`), persistence);
      ctx.results.systems[name] = { durability: redis.durability };
      try {
        const load = await loadRedis(redis.port, variant.keys, variant.valueBytes);
        recordLoad(ctx, name, variant, load.seconds);
        const vb = variant.valueBytes;
        const contender = (test: 'get' | 'set') =>
          redisContender({ name, system: redis, call: { keyspace: variant.keys, test, valueBytes: vb } });
        const at = variant.main ? undefined : [ctx.plan.largeConcurrency];
        if (persistence === 'none') {
          if (variant.main && ctx.scenarios.has('memory')) {
            const info = await redisInfoMemory(redis.port);
            const rss = Number(info.used_memory_rss);
            ctx.results.memory.push({
              system: 'redis',
              keys: variant.keys,
              valueBytes: vb,
              rssBytes: rss,
              diskBytes: null,
              details: { used_memory: Number(info.used_memory), used_memory_rss: rss },
              rssBytesPerMillionKeys: perMillion(rss, variant.keys),
              diskBytesPerMillionKeys: null,
            });
            ctx.log(`redis memory: used_memory_rss ${mib(rss)} MiB`);
          }
          if (ctx.scenarios.has('get')) {
            if (at) await closedPoints(ctx, 'get', contender('get'), vb, at);
            else await getPoints(ctx, contender('get'), vb);
          }
          if (variant.main && ctx.scenarios.has('multiget')) {
            const keys = Array.from({ length: ctx.plan.multiGetKeys }, () => 'key:__rand_int__');
            await multiGetPoints(
              ctx,
              redisContender({
                name: 'redis-mget',
                system: redis,
                call: { keyspace: variant.keys, command: ['MGET', ...keys], valueBytes: vb },
              }),
            );
          }
        }
        if (ctx.scenarios.has('set')) {
          if (at) await closedPoints(ctx, 'set', contender('set'), vb, at);
          else await setPoints(ctx, contender('set'), vb);
        }
      } finally {
        await redis.stop();
      }
    }
  }
}
