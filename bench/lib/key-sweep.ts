import { Kvs2Client } from '../../src/client/index.js';
import { keyFor } from './dataset.js';

/** Keys per MultiGet of a sweep, and MultiGets in flight. */
const SWEEP_BATCH = 1_000;
const SWEEP_IN_FLIGHT = 4;

/**
 * Reads every key 0..keys-1 once through MultiGet (so that a node has touched every page of its store, as
 * the memory figures assume); resolves with the seconds it took. Throws when a loaded key is missing.
 */
export async function sweepEveryKey(target: string, keys: number, what: string): Promise<number> {
  const client = new Kvs2Client(target, { timeoutMs: 60_000 });
  try {
    const started = performance.now();
    let next = 0;
    let missing = 0;
    const worker = async (): Promise<void> => {
      while (next < keys) {
        const first = next;
        next = Math.min(keys, next + SWEEP_BATCH);
        const batch = Array.from({ length: next - first }, (_, n) => keyFor(first + n));
        const reply = await client.multiGet({ keys: batch });
        missing += reply.parts.filter((part) => part.status !== 0).length;
      }
    };
    await Promise.all(Array.from({ length: SWEEP_IN_FLIGHT }, worker));
    if (missing > 0) throw new Error(`${what}: ${missing} of ${keys} keys not found`);
    return (performance.now() - started) / 1000;
  } finally {
    client.close();
  }
}
