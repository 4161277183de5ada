/**
 * What one overwrite of an existing key costs kvs2's store (LmdbStore, the real apply path with its
 * progress record and sync), by how the store was filled and by how many records a transaction holds.
 * A replica applies every record of the log this way, so this is the floor of its cost per write.
 *
 *   npm run --silent build && node dist/bench/store-overwrites.js [--keys N] [--updates N]
 *
 * Prints a Markdown table: wall rate, CPU per update of the main thread and of the others (LMDB's writer
 * is a libuv worker; V8's GC threads too), bytes the process wrote to disk per update, and file size.
 * Run it on an otherwise idle machine; it pins nothing.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { LmdbStore } from '../src/store/lmdb-store.js';
import type { StoreWrite } from '../src/store/store.js';
import { keyFor, seededRandom, valueFor } from './lib/dataset.js';

const VALUE_BYTES = 100;
const LOAD_BATCH = 10_000;
const TRANSACTION_SIZES = [500, 5_000, 20_000];

interface ThreadTicks {
  readonly main: number;
  readonly others: number;
}

/** CPU clock ticks (1/100 s) of this process, main thread and the rest, from /proc. */
function threadTicks(): ThreadTicks {
  let main = 0;
  let others = 0;
  for (const task of readdirSync('/proc/self/task')) {
    const stat = readFileSync(`/proc/self/task/${task}/stat`, 'utf8');
    // Fields after the command name, which may hold spaces: utime and stime are the 12th and 13th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    if (Number(task) === process.pid) main += ticks;
    else others += ticks;
  }
  return { main, others };
}

function diskWriteBytes(): number {
  const match = /^write_bytes: (\d+)$/m.exec(readFileSync('/proc/self/io', 'utf8'));
  return match ? Number(match[1]) : Number.NaN;
}

/** Applies `writes` in transactions of `perTransaction`, each awaited like the replica does. */
async function applyAll(store: LmdbStore, writes: readonly StoreWrite[], perTransaction: number): Promise<void> {
  let offset = store.progress().appliedOffsets.get(0) ?? 0;
  for (let start = 0; start < writes.length; start += perTransaction) {
    const batch = writes.slice(start, start + perTransaction);
    offset += batch.length;
    await store.apply(batch, new Map([[0, offset]]), 'store-overwrites');
  }
}

function shuffled(count: number, seed: number): number[] {
  const random = seededRandom(seed);
  const order = Array.from({ length: count }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  return order;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { keys: { type: 'string', default: '1000000' }, updates: { type: 'string', default: '200000' } },
  });
  const keys = Number(values.keys);
  const updates = Number(values.updates);
  console.log(
    `| Store filled in | Records per transaction | Updates/s | µs CPU per update: main / other threads | Disk KB written per update | data.mdb MB |`,
  );
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const fill of ['key order', 'random order'] as const) {
    for (const perTransaction of TRANSACTION_SIZES) {
      const dir = mkdtempSync(join(tmpdir(), 'kvs2-store-overwrites-'));
      const store = LmdbStore.open(dir);
      try {
        const order = fill === 'key order' ? Array.from({ length: keys }, (_, i) => i) : shuffled(keys, 11);
        await applyAll(
          store,
          order.map((i, n) => ({ key: keyFor(i), value: valueFor(i, VALUE_BYTES), version: n + 1 })),
          LOAD_BATCH,
        );
        const random = seededRandom(perTransaction);
        const overwrites = Array.from({ length: updates }, (_, n) => {
          const i = Math.floor(random() * keys);
          return { key: keyFor(i), value: valueFor(i + n + 1, VALUE_BYTES), version: keys + n + 1 };
        });
        const ticksBefore = threadTicks();
        const bytesBefore = diskWriteBytes();
        const started = performance.now();
        await applyAll(store, overwrites, perTransaction);
        const seconds = (performance.now() - started) / 1000;
        const ticksAfter = threadTicks();
        const written = diskWriteBytes() - bytesBefore;
        const perUpdateUs = (ticks: number): string => ((ticks * 10_000) / updates).toFixed(1);
        console.log(
          `| ${fill} | ${perTransaction.toLocaleString('en')} | ${Math.round(updates / seconds).toLocaleString('en')} | ` +
            `${perUpdateUs(ticksAfter.main - ticksBefore.main)} / ${perUpdateUs(ticksAfter.others - ticksBefore.others)} | ` +
            `${(written / updates / 1024).toFixed(1)} | ${(statSync(join(dir, 'data.mdb')).size / 1e6).toFixed(0)} |`,
        );
      } finally {
        await store.close();
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }
}

await main();
