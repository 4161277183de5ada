import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { RunContext } from '../context.js';
import { ghzContender } from '../lib/contenders.js';
import { diskBytes } from '../lib/disk.js';
import { loadKvs2 } from '../lib/loader.js';
import type { Contender } from '../lib/measure.js';
import { rssBytes, rssParts, sleep } from '../lib/processes.js';
import { treePath } from '../lib/tree.js';
import { closedPoints, getPoints, multiGetPoints, setPoints, writePoints } from '../scenarios.js';
import { type Kvs2Node, startKvs2 } from '../systems/kvs2.js';
import { pairedGet } from './paired-get.js';
import { perMillion, recordLoad, type Variant, variantsOf } from './variants.js';

export function kvs2Contender(
  ctx: RunContext,
  node: { name: string; target: string; serverPids(): number[]; durability: string; stop(): Promise<void> },
  name: string,
  method: 'Get' | 'MultiGet' | 'Set' | 'Write',
  valueBytes: number,
): Contender {
  const kinds = { Get: 'get', MultiGet: 'multiget', Set: 'set', Write: 'write' } as const;
  const kind = kinds[method];
  return ghzContender({
    name,
    system: node,
    proto: treePath('proto/kvs2.proto'),
    call: `kvs2.Kvs2/${method}`,
    dataFile: ctx.dataFile(kind, valueBytes),
    workDir: ctx.dir('ghz'),
    warmUpSec: ctx.plan.warmUpSec,
  });
}

/** kvs2 on its embedded log: load, memory, Get, MultiGet, Set; then the large-value variant. */
export async function kvs2Phase(ctx: RunContext): Promise<void> {
  for (const variant of variantsOf(ctx)) {
    const dataDir = ctx.dir(`kvs2-${variant.label}`);
    ctx.log(`starting kvs2 (embedded log, ${variant.label} data)`);
    const node = await startKvs2({ name: 'kvs2', dataDir, logFile: ctx.logFile(`kvs2-${variant.label}`) });
    ctx.results.systems.kvs2 = { durability: node.durability };
    try {
      const load = await loadKvs2(node.target, variant.keys, variant.valueBytes);
      recordLoad(ctx, 'kvs2', variant, load.seconds);
      if (variant.main && ctx.scenarios.has('memory')) await recordKvs2Memory(ctx, 'kvs2', node, dataDir, variant);
      await runReadWriteScenarios(ctx, node, variant);
    } finally {
      await node.stop();
    }
    if (variant.main && ctx.profile) await profileGet(ctx, dataDir);
  }
}

async function runReadWriteScenarios(ctx: RunContext, node: Kvs2Node, variant: Variant): Promise<void> {
  const { plan, scenarios } = ctx;
  const vb = variant.valueBytes;
  if (variant.main) {
    if (scenarios.has('get')) await getPoints(ctx, kvs2Contender(ctx, node, 'kvs2', 'Get', vb), vb);
    await pairedGet(ctx, node, vb, (system) => kvs2Contender(ctx, system, system.name, 'Get', vb));
    if (scenarios.has('multiget')) await multiGetPoints(ctx, kvs2Contender(ctx, node, 'kvs2', 'MultiGet', vb));
    if (scenarios.has('set')) {
      await setPoints(ctx, kvs2Contender(ctx, node, 'kvs2', 'Set', vb), vb);
      await writePoints(ctx, kvs2Contender(ctx, node, 'kvs2', 'Write', vb), vb);
    }
    return;
  }
  const at = [plan.largeConcurrency];
  if (scenarios.has('get')) await closedPoints(ctx, 'get', kvs2Contender(ctx, node, 'kvs2', 'Get', vb), vb, at);
  if (scenarios.has('set')) await closedPoints(ctx, 'set', kvs2Contender(ctx, node, 'kvs2', 'Set', vb), vb, at);
}

export async function recordKvs2Memory(
  ctx: RunContext,
  system: string,
  node: Kvs2Node,
  dataDir: string,
  variant: Variant,
): Promise<void> {
  // Settled memory: the replica applies the last acknowledged writes, and a node gives the heap a burst
  // grew back to the OS once its event loop has been idle for a whole check interval (5-10 s).
  await sleep(12_000);
  const rss = rssBytes(node.pid);
  const parts = rssParts(node.pid);
  const store = diskBytes(join(dataDir, 'store'));
  const log = diskBytes(join(dataDir, 'log'));
  const dataMdb = diskBytes(join(dataDir, 'store', 'data.mdb'));
  ctx.results.memory.push({
    system,
    keys: variant.keys,
    valueBytes: variant.valueBytes,
    rssBytes: rss,
    diskBytes: store,
    details: {
      rssAnonBytes: parts?.anonBytes ?? null,
      rssFileBytes: parts?.fileBytes ?? null,
      storeDataMdbBytes: dataMdb,
      embeddedLogBytes: log,
    },
    rssBytesPerMillionKeys: perMillion(rss, variant.keys),
    diskBytesPerMillionKeys: perMillion(store, variant.keys),
  });
  ctx.log(`${system} memory: RSS ${mib(rss)} MiB, store ${mib(store)} MiB (data.mdb ${mib(dataMdb)}), log ${mib(log)}`);
}

export function mib(bytes: number | null): string {
  return bytes === null ? '-' : (bytes / 1024 / 1024).toFixed(1);
}

/** `node --cpu-prof` on a kvs2 serving Get at 64 in flight: where its CPU time goes. */
async function profileGet(ctx: RunContext, dataDir: string): Promise<void> {
  const profileDir = ctx.dir('cpu-profile');
  ctx.log('profiling kvs2 during a Get run (node --cpu-prof)');
  let node: Kvs2Node | undefined;
  try {
    node = await startKvs2({
      name: 'kvs2-profiled',
      dataDir,
      logFile: ctx.logFile('kvs2-profiled'),
      nodeFlags: ['--cpu-prof', '--cpu-prof-dir', profileDir],
    });
    const contender = kvs2Contender(ctx, node, 'kvs2-profiled', 'Get', ctx.plan.valueBytes);
    await contender.warmUp({ concurrency: 64, durationSec: ctx.plan.durationSec }, 'profile-warmup');
    await contender.run({ concurrency: 64, durationSec: ctx.plan.durationSec }, 'profile');
  } catch (error) {
    ctx.skip('cpu profile', error instanceof Error ? error.message : String(error));
  } finally {
    await node?.stop();
  }
  const file = readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile'));
  if (file === undefined) {
    ctx.skip('cpu profile', 'node wrote no .cpuprofile');
    return;
  }
  ctx.results.profile = {
    file: join(profileDir, file),
    ...selfTime(join(profileDir, file), ctx.plan.durationSec, 15),
  };
}

interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
  samples: number[];
  timeDeltas: number[];
}

/**
 * Self time by function and by component, over the samples of the measured run only (the last
 * `durationSec` before the shutdown, which takes well under a second), idle time left out.
 */
export function selfTime(
  file: string,
  durationSec: number,
  count: number,
): {
  topSelf: Array<{ fn: string; selfPercent: number }>;
  byComponent: Array<{ component: string; selfPercent: number }>;
} {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const frames = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const times: number[] = [];
  let t = 0;
  for (const delta of profile.timeDeltas) {
    t += delta;
    times.push(t);
  }
  const end = t - 1_000_000; // microseconds: leave the shutdown out
  const start = end - durationSec * 1_000_000;
  const byFunction = new Map<string, number>();
  const byComponent = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const at = times[i] ?? 0;
    const frame = frames.get(id);
    if (at < start || at > end || frame === undefined || frame.functionName === '(idle)') return;
    total++;
    const where = frame.url ? ` ${basename(frame.url)}:${frame.lineNumber + 1}` : '';
    const fn = `${frame.functionName || '(anonymous)'}${where}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + 1);
    const component = componentOf(frame.url, frame.functionName);
    byComponent.set(component, (byComponent.get(component) ?? 0) + 1);
  });
  const ranked = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => [k, total ? Math.round((n / total) * 1000) / 10 : 0] as const);
  return {
    topSelf: ranked(byFunction)
      .slice(0, count)
      .map(([fn, selfPercent]) => ({ fn, selfPercent })),
    byComponent: ranked(byComponent).map(([component, selfPercent]) => ({ component, selfPercent })),
  };
}

function componentOf(url: string, functionName: string): string {
  if (url.includes('@grpc/grpc-js')) return 'grpc-js';
  if (url.includes('/lmdb/') || url.includes('msgpackr')) return 'lmdb-js';
  if (url.includes('@bufbuild/protobuf')) return 'protobuf encoding (@bufbuild/protobuf)';
  if (url.includes('/dist/src/')) return 'kvs2 code (dist/src)';
  if (url.includes('node_modules')) return 'other packages';
  if (url.startsWith('node:')) return `Node internals: ${url.replace(/^node:(internal\/)?/, '').split('/')[0]}`;
  if (functionName === '(garbage collector)') return 'garbage collector';
  if (functionName === '(program)') return 'native, not attributed (program)';
  return url ? 'other' : 'native (other)';
}
