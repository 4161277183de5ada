import type { RootDatabase } from 'lmdb';
import { Kvs2Error } from '../errors.js';
import { KVS2_VERSION } from '../version.js';
import { PROGRESS_KEY } from './saved-progress.js';

/**
 * The store's format version, kept in its `meta` database beside the applied offsets. A kvs2 that changes
 * how the store is laid out writes a new version, so that an older kvs2 refuses the store instead of
 * misreading it; a newer kvs2 knows which formats it reads (and may migrate them).
 */
export const STORE_FORMAT_KEY = 'format';
/**
 * The format this kvs2 writes: 2, each value stored behind its version (versioned-value.ts). Format 1 held
 * the values' bytes alone; a writer upgrades such a store as it opens it (Store.upgradeUnversioned()).
 */
export const STORE_FORMAT_VERSION = 2;
/** The store format without versions. */
export const UNVERSIONED_STORE_FORMAT = 1;
/** The formats this kvs2 reads. */
export const READABLE_STORE_FORMATS: readonly number[] = [1, 2];

/**
 * Checks the store's format version, and records it in a store that has none: a new (empty) store is
 * written in STORE_FORMAT_VERSION; one with data, written before versions were recorded, has the layout of
 * format 1. Throws DATA_FORMAT_UNSUPPORTED for a version this kvs2 does not read.
 */
export function adoptStoreFormat(env: RootDatabase, description: string): number {
  const meta = env.openDB<unknown, string>({ name: 'meta' });
  const found = meta.get(STORE_FORMAT_KEY);
  if (found === undefined) {
    const format = holdsAnything(env) ? UNVERSIONED_STORE_FORMAT : STORE_FORMAT_VERSION;
    meta.putSync(STORE_FORMAT_KEY, format);
    return format;
  }
  return checkedFormat(found, description);
}

/**
 * Checks the format version of a store some writer has opened already; writes nothing. A store without one
 * has the layout of format 1 (or is being created, and then holds nothing yet).
 */
export function checkStoreFormat(env: RootDatabase, description: string): number {
  const found = env.openDB<unknown, string>({ name: 'meta' }).get(STORE_FORMAT_KEY);
  return checkedFormat(found ?? UNVERSIONED_STORE_FORMAT, description);
}

/** Whether the store holds a key or saved progress. */
function holdsAnything(env: RootDatabase): boolean {
  const kv = env.openDB<Buffer, Buffer>({ name: 'kv', keyEncoding: 'binary', encoding: 'binary' });
  const { entryCount } = kv.getStats() as { entryCount: number };
  return entryCount > 0 || env.openDB<unknown, string>({ name: 'meta' }).get(PROGRESS_KEY) !== undefined;
}

function checkedFormat(found: unknown, description: string): number {
  if (typeof found === 'number' && READABLE_STORE_FORMATS.includes(found)) return found;
  throw new Kvs2Error(
    'DATA_FORMAT_UNSUPPORTED',
    `${description} is in format version ${JSON.stringify(found)}, which this kvs2 (${KVS2_VERSION}) cannot ` +
      `read: it reads store format version ${READABLE_STORE_FORMATS.join(', ')}. It was written by a newer ` +
      'kvs2: run that version (or a later one) on this data dir.',
  );
}
