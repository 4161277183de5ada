import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LmdbStore } from '../../src/store/lmdb-store.js';
import type { StoreProgress } from '../../src/store/store.js';

/** A store in `dir` holding `entries`, applied in the given order, at these offsets of this log. */
export async function fillStore(
  dir: string,
  entries: ReadonlyArray<readonly [Buffer, Buffer]>,
  offsets: ReadonlyMap<number, number>,
  logIdentity: string,
): Promise<void> {
  const store = LmdbStore.open(dir);
  try {
    for (let i = 0; i < entries.length; i += 500) {
      const writes = entries.slice(i, i + 500).map(([key, value], n) => ({ key, value, version: i + n + 1 }));
      await store.apply(writes, offsets, logIdentity);
    }
    if (entries.length === 0) await store.apply([], offsets, logIdentity);
    await store.markCaughtUp(1_700_000_000_000);
    await store.flushed();
  } finally {
    await store.close();
  }
}

/** Every entry (hex key → hex value, in key order) and the progress of the store in `dir`. */
export async function storeContent(
  dir: string,
): Promise<{ entries: Array<[string, string]>; progress: StoreProgress }> {
  const store = LmdbStore.open(dir);
  try {
    using snapshot = store.snapshot();
    const entries: Array<[string, string]> = [];
    for (const { key, value } of snapshot.entries()) {
      entries.push([Buffer.from(key).toString('hex'), Buffer.from(value).toString('hex')]);
    }
    return { entries, progress: store.progress() };
  } finally {
    await store.close();
  }
}

/** All chunks of an async iterable, concatenated. */
export async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const chunk of chunks) parts.push(chunk);
  return Buffer.concat(parts);
}

/** The bytes as chunks of `size` (the last one shorter), as a file or a stream would cut them. */
export async function* chunked(bytes: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

/**
 * Every file under `dir` with its size and modification time: equal listings mean nothing changed. LMDB's
 * lock.mdb is left out: it is the reader table every open (even a read-only check) touches, not data.
 */
export function listing(dir: string): string[] {
  const found: string[] = [];
  const walk = (path: string): void => {
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      const full = join(path, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name !== 'lock.mdb') {
        const stat = statSync(full);
        found.push(`${full} ${stat.size} ${stat.mtimeMs}`);
      }
    }
  };
  walk(dir);
  return found.sort();
}
