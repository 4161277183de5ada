import type { RunContext } from '../context.js';

/** A data set: the main one (every scenario) or the large-value one (Get and Set at one concurrency). */
export interface Variant {
  readonly main: boolean;
  readonly keys: number;
  readonly valueBytes: number;
  readonly label: string;
}

export function variantsOf(ctx: RunContext): Variant[] {
  const { plan } = ctx;
  const variants: Variant[] = [{ main: true, keys: plan.keys, valueBytes: plan.valueBytes, label: 'main' }];
  if (plan.largeValueBytes > 0 && (ctx.scenarios.has('get') || ctx.scenarios.has('set'))) {
    variants.push({ main: false, keys: plan.largeKeys, valueBytes: plan.largeValueBytes, label: 'large' });
  }
  return variants;
}

export function recordLoad(ctx: RunContext, system: string, variant: Variant, seconds: number): void {
  ctx.results.loads.push({
    system,
    keys: variant.keys,
    valueBytes: variant.valueBytes,
    seconds,
    keysPerSec: variant.keys / seconds,
  });
  ctx.log(`loaded ${variant.keys} keys of ${variant.valueBytes} B into ${system} in ${seconds.toFixed(1)} s`);
}

export function perMillion(bytes: number | null, keys: number): number | null {
  return bytes === null ? null : (bytes / keys) * 1_000_000;
}
