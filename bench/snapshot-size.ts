/**
 * What a snapshot restore and `kvs2 compact` give back of a store filled in random key order (as a
 * bootstrap from Kafka fills it: partitions hash the keys), and what they cost: data.mdb of the random
 * store, of the store restored from its snapshot and of the store compacted in place, with the time of
 * each step on this machine. Keys and values as the benchmark suite's (16-byte keys, 100-byte values).
 *
 *   npm run --silent build && node dist/bench/snapshot-size.js [--keys N]
 *
 * Prints a Markdown table. Run it on an otherwise idle machine.
 */
import { createReadStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { writeOutput } from '../src/cli/commands/snapshot-files.js';
import { compactDataDir, snapshotDataDir } from '../src/snapshot/data-dir-snapshot.js';
import { installSnapshot } from '../src/snapshot/snapshot-install.js';
import { LmdbStore } from '../src/store/lmdb-store.js';
import type { StoreWrite } from '../src/store/store.js';
import { keyFor, seededRandom, valueFor } from './lib/dataset.js';

const VALUE_BYTES = 100;
/** Records per store transaction, as the replica applies a fetched batch. */
const LOAD_BATCH = 5_000;

const { values } = parseArgs({ options: { keys: { type: 'string', default: '1000000' } } });
const keys = Number(values.keys);
const root = mkdtempSync(join(tmpdir(), 'kvs2-snapshot-size-'));
const mib = (bytes: number): string => (bytes / 1024 ** 2).toFixed(1);
const seconds = (since: number): string => ((performance.now() - since) / 1000).toFixed(2);

try {
  const source = join(root, 'random');
  const order = Array.from({ length: keys }, (_, i) => i);
  const random = seededRandom(7);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  let started = performance.now();
  const store = LmdbStore.open(join(source, 'store'));
  for (let at = 0; at < keys; at += LOAD_BATCH) {
    const writes: StoreWrite[] = order
      .slice(at, at + LOAD_BATCH)
      .map((i) => ({ key: keyFor(i), value: valueFor(i, VALUE_BYTES) }));
    await store.apply(writes, new Map([[0, at + writes.length]]), 'embedded:snapshot-size-bench');
  }
  await store.flushed();
  await store.close();
  const loadSeconds = seconds(started);
  const dataFile = (dataDir: string): number => statSync(join(dataDir, 'store', 'data.mdb')).size;
  const randomBytes = dataFile(source);

  const file = join(root, 'random.kvs2snap');
  started = performance.now();
  const snapshot = await snapshotDataDir(source);
  let fileBytes: number;
  try {
    fileBytes = await writeOutput(file, snapshot.encoder);
  } finally {
    await snapshot.close();
  }
  const saveSeconds = seconds(started);

  const restored = join(root, 'restored');
  started = performance.now();
  await installSnapshot(createReadStream(file, { highWaterMark: 1024 * 1024 }), { dataDir: restored });
  const restoreSeconds = seconds(started);

  started = performance.now();
  const compacted = await compactDataDir(source);
  const compactSeconds = seconds(started);

  const raw = keys * (16 + VALUE_BYTES);
  console.log(`${keys} keys of 16 bytes with ${VALUE_BYTES}-byte values (${mib(raw)} MiB of keys and values)\n`);
  console.log('| store | data.mdb (MiB) | ÷ raw bytes | step | seconds |');
  console.log('| --- | --- | --- | --- | --- |');
  console.log(
    `| filled in random order, ${LOAD_BATCH} keys a transaction | ${mib(randomBytes)} | ${(randomBytes / raw).toFixed(2)} | load | ${loadSeconds} |`,
  );
  console.log(`| snapshot file | ${mib(fileBytes)} | ${(fileBytes / raw).toFixed(2)} | save | ${saveSeconds} |`);
  console.log(
    `| restored from the snapshot | ${mib(dataFile(restored))} | ${(dataFile(restored) / raw).toFixed(2)} | restore | ${restoreSeconds} |`,
  );
  console.log(
    `| compacted in place | ${mib(compacted.bytesAfter)} | ${(compacted.bytesAfter / raw).toFixed(2)} | compact | ${compactSeconds} |`,
  );
} finally {
  rmSync(root, { recursive: true, force: true });
}
