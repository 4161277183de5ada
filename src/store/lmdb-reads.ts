import type { Database, Transaction } from 'lmdb';
import type { ScanPage, ScanRange } from './store.js';

/**
 * Reads of a store's `kv` database, shared by the store a node writes (lmdb-store.ts) and the read-only
 * view of it another process opens (read-only-store.ts), so that both answer exactly alike. They throw
 * lmdb-js's errors as they come; each caller says which store failed.
 */

/** Reads in this read transaction; absent: lmdb-js's own, renewed at each turn of the event loop. */
export type ReadAt = { readonly transaction: Transaction } | undefined;

/** The value of `key`, in a Buffer of its own, or undefined. */
export function readValue(kv: Database<Buffer, Buffer>, key: Buffer, at?: ReadAt): Buffer | undefined {
  // getBinary() copies into a Buffer with its own ArrayBuffer, a native allocation per value.
  // getBinaryFast() answers in lmdb-js's reusable buffer (overwritten by the next read), so the value is
  // copied from it into a Buffer that small values share Node's pool for.
  const shared = at === undefined ? kv.getBinaryFast(key) : getBinaryFastIn(kv, key, at);
  if (shared === undefined) return undefined;
  const size = shared.length;
  const value = Buffer.allocUnsafe(size);
  shared.copy(value, 0, 0, size);
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
  const items: Array<{ key: Buffer; value: Buffer | undefined }> = [];
  let bytes = 0;
  // One more than the limit tells whether the range goes on (and one more skips an excluded start).
  const options = {
    start: range.start,
    ...(range.end === undefined ? {} : { end: range.end }),
    limit: range.limit + (range.startExclusive ? 2 : 1),
    ...(at === undefined ? {} : { transaction: at.transaction }),
  };
  const entries: Iterable<{ key: Buffer; value: Buffer | undefined }> = range.keysOnly
    ? kv.getKeys(options).map((key) => ({ key, value: undefined }))
    : kv.getRange(options);
  for (const { key, value } of entries) {
    if (range.startExclusive && items.length === 0 && key.equals(range.start)) continue;
    const item = { key, value };
    const itemBytes = key.length + (item.value?.length ?? 0);
    if (items.length === range.limit || (items.length > 0 && bytes + itemBytes > range.maxBytes)) {
      return { items, more: true };
    }
    bytes += itemBytes;
    items.push(item);
  }
  return { items, more: false };
}
