import type { RunContext } from '../context.js';
import { loadKvs2 } from '../lib/loader.js';
import { measureAlternated } from '../lib/measure.js';
import type { BaselineComparison, Sample, Scenario } from '../lib/results.js';
import { describeServerArgs } from '../lib/server-args.js';
import { spread } from '../lib/stats.js';
import { type KafkaCluster, kafkaUp, kcatProduce } from '../systems/kafka.js';
import { type Kvs2Node, type Kvs2Options, startKvs2 } from '../systems/kvs2.js';
import { kcatLines, waitUntilApplied } from './kafka.js';
import { kvs2Contender } from './kvs2.js';
import { recordLoad, type Variant } from './variants.js';

/**
 * A run with --baseline: this tree and another built kvs2 checkout (or this same build, with other server
 * flags) serve the same data side by side on the server core, and every closed-loop point alternates
 * between them (measureAlternated), so that a difference between two builds, or two settings, is not lost
 * in the host's drift between two separate runs.
 */

/** The two sides of the comparison, besides this tree's own build. */
export interface BaselineSides {
  /** Root of the baseline build: another checkout's snapshot, or this run's own for a same-build comparison. */
  readonly tree: string;
  /** Extra `kvs2 serve` flags of this tree's node and of the baseline's node. */
  readonly currentArgs: readonly string[];
  readonly baselineArgs: readonly string[];
}

const CALLS = [
  ['get', 'Get'],
  ['multiget', 'MultiGet'],
  ['set', 'Set'],
] as const;

/** Both trees on their embedded logs: Get, MultiGet and Set as the run's scenarios ask. */
export async function baselineEmbeddedPhase(ctx: RunContext, sides: BaselineSides): Promise<void> {
  const variant = mainVariant(ctx);
  await withBothTrees(
    ctx,
    ['kvs2', 'kvs2-baseline'],
    (name) => ({ name, dataDir: ctx.dir(name), logFile: ctx.logFile(name) }),
    sides,
    async (nodes) => {
      for (const node of nodes) {
        recordLoad(ctx, node.name, variant, (await loadKvs2(node.target, variant.keys, variant.valueBytes)).seconds);
      }
      await compare(ctx, 'embedded', nodes, variant.valueBytes);
    },
  );
}

/** Both trees on one Kafka broker, each on its own topic loaded by kcat: Set only (a local Get never asks the log). */
export async function baselineKafkaPhase(ctx: RunContext, sides: BaselineSides): Promise<void> {
  if (!ctx.scenarios.has('set')) return;
  const variant = mainVariant(ctx);
  ctx.log('starting Kafka (one broker)');
  const cluster: KafkaCluster = await kafkaUp(ctx.dir('kafka-state'));
  ctx.results.systems.kafka = { durability: 'acks=all, 1 broker, no fsync per write (Kafka default)' };
  try {
    await withBothTrees(
      ctx,
      ['kvs2-kafka', 'kvs2-kafka-baseline'],
      (name) => ({
        name,
        dataDir: ctx.dir(name),
        logFile: ctx.logFile(name),
        kafka: { brokers: cluster.brokers, topic: `bench-${name}`, extraPids: () => cluster.brokerPids() },
      }),
      sides,
      async (nodes) => {
        for (const node of nodes) {
          const lines = kcatLines(variant.keys, variant.valueBytes);
          const { seconds } = await kcatProduce(cluster, `bench-${node.name}`, lines);
          recordLoad(ctx, `${node.name} (kcat into the topic)`, variant, seconds);
          await waitUntilApplied(node, variant.keys);
        }
        await compare(ctx, 'kafka', nodes, variant.valueBytes);
      },
    );
  } finally {
    ctx.log('stopping Kafka');
    await cluster.down();
  }
}

function mainVariant(ctx: RunContext): Variant {
  return { main: true, keys: ctx.plan.keys, valueBytes: ctx.plan.valueBytes, label: 'main' };
}

/** Starts this tree's node and the baseline's (both on the server core), runs `body`, stops both. */
async function withBothTrees(
  ctx: RunContext,
  names: readonly [string, string],
  options: (name: string) => Kvs2Options,
  sides: BaselineSides,
  body: (nodes: readonly [Kvs2Node, Kvs2Node]) => Promise<void>,
): Promise<void> {
  const started: Kvs2Node[] = [];
  const currentFlags = `server flags ${describeServerArgs(sides.currentArgs)}`;
  const baselineFlags = `server flags ${describeServerArgs(sides.baselineArgs)}`;
  try {
    ctx.log(`starting ${names[0]} (this tree, ${currentFlags}) and ${names[1]} (the baseline, ${baselineFlags})`);
    const current = await startKvs2({ ...options(names[0]), serverArgs: sides.currentArgs });
    started.push(current);
    const baseline = await startKvs2({ ...options(names[1]), tree: sides.tree, serverArgs: sides.baselineArgs });
    started.push(baseline);
    ctx.results.systems[current.name] = { durability: current.durability, notes: `this tree, ${currentFlags}` };
    ctx.results.systems[baseline.name] = { durability: baseline.durability, notes: `the baseline, ${baselineFlags}` };
    await body([current, baseline]);
  } finally {
    for (const node of started) await node.stop();
  }
}

async function compare(
  ctx: RunContext,
  log: 'embedded' | 'kafka',
  [current, baseline]: readonly [Kvs2Node, Kvs2Node],
  valueBytes: number,
): Promise<void> {
  const { plan } = ctx;
  const concurrencies: Record<Scenario, readonly number[]> = {
    get: plan.getConcurrency,
    multiget: plan.multiGetConcurrency,
    set: plan.setConcurrency,
    write: plan.writeConcurrency,
  };
  for (const [scenario, method] of CALLS) {
    if (!ctx.scenarios.has(scenario) || (log === 'kafka' && scenario !== 'set')) continue;
    const a = kvs2Contender(ctx, current, current.name, method, valueBytes);
    const b = kvs2Contender(ctx, baseline, baseline.name, method, valueBytes);
    for (const concurrency of concurrencies[scenario]) {
      const label = `${scenario} on the ${log} log at ${concurrency} in flight`;
      try {
        const load = { concurrency, durationSec: plan.durationSec };
        const pairs = await measureAlternated(
          a,
          b,
          load,
          `baseline-${log}-${scenario}-${concurrency}`,
          plan.repetitions,
        );
        const result: BaselineComparison = {
          scenario,
          log,
          valueBytes,
          concurrency,
          current: side(pairs.map((p) => p[0])),
          baseline: side(pairs.map((p) => p[1])),
          ratio: spread(pairs.map(([c, b]) => (b.opsPerSec > 0 ? c.opsPerSec / b.opsPerSec : null))),
        };
        ctx.results.baseline?.comparisons.push(result);
        ctx.log(
          `${label}: this tree ${result.current.opsPerSec?.median.toFixed(0)}, baseline ` +
            `${result.baseline.opsPerSec?.median.toFixed(0)} calls/s, ratio ${result.ratio?.median.toFixed(3)}`,
        );
      } catch (error) {
        ctx.skip(`${label} against the baseline`, error instanceof Error ? error.message : String(error));
      }
    }
  }
}

function side(samples: readonly Sample[]): BaselineComparison['current'] {
  return {
    opsPerSec: spread(samples.map((s) => s.opsPerSec)),
    p99Ms: spread(samples.map((s) => s.latencyMs.p99)),
    serverCpuSecPer1kOps: spread(samples.map((s) => s.serverCpuSecPer1kOps)),
    samples,
  };
}
