import type { RunContext } from './context.js';
import type { Contender } from './lib/measure.js';

/**
 * The points of scenarios 1-3 for one contender. Fixed rates are the same absolute rates for every
 * contender: fractions of what kvs2 reached in closed loop earlier in the run (kvs2 runs first).
 */

/** Scenario 1: Get, closed loop at each concurrency, then fixed rates. Returns the best rate. */
export async function getPoints(ctx: RunContext, contender: Contender, valueBytes: number): Promise<number | null> {
  const { plan } = ctx;
  let best: number | null = null;
  for (const concurrency of plan.getConcurrency) {
    const point = await ctx.point({
      scenario: 'get',
      contender,
      valueBytes,
      keysPerCall: 1,
      load: { concurrency, durationSec: plan.durationSec },
      repetitions: plan.repetitions,
    });
    const rate = point?.opsPerSec?.median;
    if (rate !== undefined && (best === null || rate > best)) best = rate;
  }
  if (contender.system === 'kvs2' && valueBytes === plan.valueBytes) ctx.kvs2BestGetRate = best;
  if (!contender.supportsRate) return best;
  if (ctx.kvs2BestGetRate === null) {
    ctx.skip(`get fixed rates for ${contender.name}`, 'no kvs2 Get rate measured in this run to derive them from');
    return best;
  }
  for (const fraction of plan.getRateFractions) {
    await ctx.point({
      scenario: 'get',
      contender,
      valueBytes,
      keysPerCall: 1,
      load: { concurrency: plan.rateWorkers, rps: ctx.kvs2BestGetRate * fraction, durationSec: plan.durationSec },
      repetitions: plan.repetitions,
    });
  }
  return best;
}

/** Scenario 2: a read of `multiGetKeys` keys per call: closed loop, then fixed rates. */
export async function multiGetPoints(ctx: RunContext, contender: Contender): Promise<void> {
  const { plan } = ctx;
  let best: number | null = null;
  for (const concurrency of plan.multiGetConcurrency) {
    const point = await ctx.point({
      scenario: 'multiget',
      contender,
      valueBytes: plan.valueBytes,
      keysPerCall: plan.multiGetKeys,
      load: { concurrency, durationSec: plan.durationSec },
      repetitions: plan.repetitions,
    });
    const rate = point?.opsPerSec?.median;
    if (rate !== undefined && (best === null || rate > best)) best = rate;
  }
  if (contender.system === 'kvs2') ctx.kvs2BestMultiGetRate = best;
  if (!contender.supportsRate) return;
  const kvs2Best = ctx.kvs2BestMultiGetRate;
  const rates = [...plan.multiGetRates, ...plan.multiGetRateFractions.flatMap((f) => (kvs2Best ? [kvs2Best * f] : []))];
  for (const rps of rates) {
    await ctx.point({
      scenario: 'multiget',
      contender,
      valueBytes: plan.valueBytes,
      keysPerCall: plan.multiGetKeys,
      load: { concurrency: plan.rateWorkers, rps, durationSec: plan.durationSec },
      repetitions: plan.repetitions,
    });
  }
}

/** Scenario 3: writes of one key (overwriting loaded keys with same-size values), closed loop. */
export function setPoints(ctx: RunContext, contender: Contender, valueBytes: number): Promise<void> {
  return closedPoints(ctx, 'set', contender, valueBytes, ctx.plan.setConcurrency);
}

/**
 * Scenario 3, batched: `Write` calls of `writeMutations` puts each, closed loop; the tables give keys/s, the
 * figure the target compares with Kafka's own producer.
 */
export async function writePoints(ctx: RunContext, contender: Contender, valueBytes: number): Promise<void> {
  for (const concurrency of ctx.plan.writeConcurrency) {
    await ctx.point({
      scenario: 'write',
      contender,
      valueBytes,
      keysPerCall: ctx.plan.writeMutations,
      load: { concurrency, durationSec: ctx.plan.durationSec },
      repetitions: ctx.plan.repetitions,
    });
  }
}

/** Closed-loop points of single-key calls at the given concurrencies. */
export async function closedPoints(
  ctx: RunContext,
  scenario: 'get' | 'set',
  contender: Contender,
  valueBytes: number,
  concurrencies: readonly number[],
): Promise<void> {
  for (const concurrency of concurrencies) {
    await ctx.point({
      scenario,
      contender,
      valueBytes,
      keysPerCall: 1,
      load: { concurrency, durationSec: ctx.plan.durationSec },
      repetitions: ctx.plan.repetitions,
    });
  }
}
