import type { Database, Transaction } from 'lmdb';
import type { ScanItem, ScanPage, ScanRange } from './store.js';
import { readVersion, VERSION_BYTES } from './versioned-value.js';

/**
 * Reads of a store's `kv` database (store format 2: each value behind its version, versioned-value.ts),
 * shared by the store a node writes (lmdb-store.ts) and the read-only view of it another process opens
 * (read-only-store.ts), so that both answer exactly alike. They throw lmdb-js's errors as they come; each
 * caller says which store failed.
 */

/** Reads in this read transaction; absent: lmdb-js's own, renewed at each turn of the event loop. */
export type ReadAt = { readonly transaction: Transaction } | undefined;

/** Where readValue() leaves the version of what it read: one object per store, reused by every read. */
export interface LastRead {
  version: number;
}

/** The value of `key`, in a Buffer of its own, or undefined; its version goes to `last` (0 if none). */
export function readValue(kv: Database<Buffer, Buffer>, key: Buffer, last: LastRead, at?: ReadAt): Buffer | undefined {
  // getBinary() copies into a Buffer with its own ArrayBuffer, a native allocation per value.
  // getBinaryFast() answers in lmdb-js's reusable buffer (overwritten by the next read), so the value is
  // copied from it into a Buffer that small values share Node's pool for, and the version read beside it.
  const shared = at === undefined ? kv.getBinaryFast(key) : getBinaryFastIn(kv, key, at);
  if (shared === undefined) {
    last.version = 0;
    return undefined;
  }
  last.version = readVersion(shared);
  const size = shared.length - VERSION_BYTES;
  const value = Buffer.allocUnsafe(size);
  shared.copy(value, 0, VERSION_BYTES, shared.length);
  return value;
}

/**
 * getBinaryFast in a given read transaction: lmdb-js takes `{ transaction }` as get() does (read.js), its
 * type declaration leaves the argument out.
 */
function getBinaryFastIn(kv: Database<Buffer, Buffer>, key: Buffer, at: NonNullable<ReadAt>): Buffer | undefined {
  return (kv.getBinaryFast as (key: Buffer, options: NonNullable<ReadAt>) => Buffer | undefined).call(kv, key, at);
}

/** One page of a range, in key order, from one read transaction. */
export function readPage(kv: Database<Buffer, Buffer>, range: ScanRange, at?: ReadAt): ScanPage {
  const items: ScanItem[] = [];
  let bytes = 0;
  // One more than the limit tells whether the range goes on (and one more skips an excluded start).
  const options = {
    start: range.start,
    ...(range.end === undefined ? {} : { end: range.end }),
    limit: range.limit + (range.startExclusive ? 2 : 1),
    ...(at === undefined ? {} : { transaction: at.transaction }),
  };
  // A keys-only page still carries versions: each is read from the shared buffer of a lookup in the same
  // read transaction, without copying the value (which may be large) out of it.
  const entries: Iterable<ScanItem> = range.keysOnly
    ? kv.getKeys(options).map((key) => ({ key, value: undefined, version: versionOf(kv, key, at) }))
    : kv.getRange(options).map(({ key, value }) => ({
        key,
        value: value.subarray(VERSION_BYTES),
        version: readVersion(value),
      }));
  for (const item of entries) {
    if (range.startExclusive && items.length === 0 && item.key.equals(range.start)) continue;
    const itemBytes = item.key.length + (item.value?.length ?? 0);
    if (items.length === range.limit || (items.length > 0 && bytes + itemBytes > range.maxBytes)) {
      return { items, more: true };
    }
    bytes += itemBytes;
    items.push(item);
  }
  return { items, more: false };
}

function versionOf(kv: Database<Buffer, Buffer>, key: Buffer, at: ReadAt): number {
  const shared = at === undefined ? kv.getBinaryFast(key) : getBinaryFastIn(kv, key, at);
  return shared === undefined ? 0 : readVersion(shared);
}
