import { writeFileSync } from 'node:fs';

/**
 * The data every system gets: key i is the 16 bytes `key:%012d` — exactly what redis-benchmark's
 * `key:__rand_int__` produces — and its value is `valueBytes` printable bytes that depend on i. Random
 * choices come from a seeded generator, so every run and every system sees the same keys.
 */

export const KEY_BYTES = 16;

export function keyFor(index: number): Buffer {
  return Buffer.from(`key:${String(index).padStart(12, '0')}`, 'latin1');
}

/** Printable, incompressible-looking bytes to cut values from. */
const VALUE_SOURCE = (() => {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const random = seededRandom(42);
  const bytes = Buffer.alloc(1 << 20);
  for (let i = 0; i < bytes.length; i++) bytes[i] = alphabet.charCodeAt(Math.floor(random() * alphabet.length));
  return bytes;
})();

export function valueFor(index: number, valueBytes: number): Buffer {
  const start = (index * 7919) % (VALUE_SOURCE.length - valueBytes);
  return VALUE_SOURCE.subarray(start, start + valueBytes);
}

/** mulberry32: small, fast and good enough to pick keys. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `count` key indexes drawn uniformly from [0, keys). */
export function randomIndexes(count: number, keys: number, seed: number): number[] {
  const random = seededRandom(seed);
  return Array.from({ length: count }, () => Math.floor(random() * keys));
}

const b64 = (bytes: Buffer): string => bytes.toString('base64');

/** Request files for ghz: a JSON array that ghz sends round robin, one element per call. */
export const ghzData = {
  kvs2Get(file: string, keys: number, count: number): void {
    writeJson(
      file,
      randomIndexes(count, keys, 1).map((i) => ({ key: b64(keyFor(i)) })),
    );
  },
  kvs2MultiGet(file: string, keys: number, count: number, batch: number): void {
    const random = seededRandom(2);
    const messages = Array.from({ length: count }, () => ({
      keys: Array.from({ length: batch }, () => b64(keyFor(Math.floor(random() * keys)))),
    }));
    writeJson(file, messages);
  },
  kvs2Set(file: string, keys: number, count: number, valueBytes: number): void {
    writeJson(
      file,
      randomIndexes(count, keys, 3).map((i, n) => ({ key: b64(keyFor(i)), value: b64(valueFor(i + n, valueBytes)) })),
    );
  },
  /** `Write` calls of `batch` puts each, on random loaded keys with new values of the same size. */
  kvs2Write(file: string, keys: number, count: number, batch: number, valueBytes: number): void {
    const indexes = randomIndexes(count * batch, keys, 4);
    writeJson(
      file,
      Array.from({ length: count }, (_, n) => ({
        mutations: indexes
          .slice(n * batch, (n + 1) * batch)
          .map((i, m) => ({ key: b64(keyFor(i)), value: b64(valueFor(i + n + m, valueBytes)) })),
      })),
    );
  },
  etcdRange(file: string, keys: number, count: number, serializable: boolean): void {
    writeJson(
      file,
      randomIndexes(count, keys, 1).map((i) => ({ key: b64(keyFor(i)), serializable })),
    );
  },
  /** A range of `batch` consecutive keys: etcd has no multi-key get of arbitrary keys outside a Txn. */
  etcdRangeBatch(file: string, keys: number, count: number, batch: number): void {
    writeJson(
      file,
      randomIndexes(count, Math.max(1, keys - batch), 2).map((i) => ({
        key: b64(keyFor(i)),
        range_end: b64(keyFor(i + batch)),
        serializable: true,
      })),
    );
  },
  etcdPut(file: string, keys: number, count: number, valueBytes: number): void {
    // PutRequest has the same fields as kvs2's SetRequest.
    ghzData.kvs2Set(file, keys, count, valueBytes);
  },
};

function writeJson(file: string, value: unknown): void {
  writeFileSync(file, JSON.stringify(value));
}
