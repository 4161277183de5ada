import type { RunContext } from '../context.js';
import { type Contender, measureAlternated } from '../lib/measure.js';
import { spread } from '../lib/stats.js';
import { startNoop } from '../systems/noop.js';
import type { GrpcSystem } from '../systems/system.js';

/**
 * Target 8 (Get ≥ 70% of the no-op server) compares two servers measured minutes apart in the main
 * scenarios, and this machine drifts by ±20% between runs. Here the no-op server runs beside kvs2 (both
 * on the server core, one idle while the other is measured) and their repetitions alternate, so a slow
 * minute of the host weighs on both; the ratio is taken pair by pair.
 */
export async function pairedGet(
  ctx: RunContext,
  kvs2: GrpcSystem,
  valueBytes: number,
  getContender: (system: GrpcSystem) => Contender,
): Promise<void> {
  if (!ctx.peers.has('noop') || !ctx.scenarios.has('get')) return;
  let noop: GrpcSystem;
  try {
    noop = await startNoop(ctx.logFile('noop-paired'), valueBytes);
  } catch (error) {
    ctx.skip('paired Get (kvs2 and no-op alternated)', error instanceof Error ? error.message : String(error));
    return;
  }
  try {
    const kvs2Get = getContender(kvs2);
    const noopGet = getContender(noop);
    for (const concurrency of ctx.plan.pairedGetConcurrency) {
      const load = { concurrency, durationSec: ctx.plan.durationSec };
      const samples = await measureAlternated(
        kvs2Get,
        noopGet,
        load,
        `paired-get-${concurrency}`,
        ctx.plan.repetitions,
      );
      const pairs = samples.map(([k, n]) => ({ kvs2: k.opsPerSec, noop: n.opsPerSec }));
      const result = {
        concurrency,
        valueBytes,
        kvs2: spread(pairs.map((p) => p.kvs2)),
        noop: spread(pairs.map((p) => p.noop)),
        ratio: spread(pairs.map((p) => (p.noop > 0 ? p.kvs2 / p.noop : null))),
        pairs,
      };
      ctx.results.pairedGet?.push(result);
      ctx.log(
        `paired get at ${concurrency} in flight: kvs2 ${result.kvs2?.median.toFixed(0)}, ` +
          `no-op ${result.noop?.median.toFixed(0)} calls/s, ratio ${result.ratio?.median.toFixed(2)}`,
      );
    }
  } catch (error) {
    ctx.skip('paired Get (kvs2 and no-op alternated)', error instanceof Error ? error.message : String(error));
  } finally {
    await noop.stop();
  }
}
