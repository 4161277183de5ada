import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type Database, open, type RootDatabase } from 'lmdb';
import { describeError, isKvs2Error, Kvs2Error } from '../errors.js';
import {
  LOADING_KEY,
  MAP_SIZE_BYTES,
  MAX_DBS,
  PROGRESS_KEY,
  type SavedProgress,
  toProgress,
  toSaved,
} from './saved-progress.js';
import type { StoreProgress } from './store.js';
import { checkStoreFormat } from './store-format.js';

/** What a store's file says about itself, read without opening it as a node's store. */
export interface StoreFileFacts {
  /** The format version recorded in it (store-format.ts); 1 when it records none. */
  readonly storeFormat: number;
  readonly progress: StoreProgress;
  /** Whether it holds the marker of a snapshot load that never finished (LmdbStore.beginLoad()). */
  readonly loading: boolean;
  /** Keys in its kv database, from the count LMDB keeps in the tree's root. */
  readonly keys: number;
}

/**
 * Reads the facts of the store in `dir` (a folder holding a data.mdb that no node has open: a store image
 * copied for a peer, or one received from a peer), opening it read-only and closing it again. Throws
 * DATA_FORMAT_UNSUPPORTED for a format this kvs2 does not read, STORE_UNAVAILABLE when LMDB cannot open it
 * (not an LMDB file, or one damaged in its first pages).
 */
export async function readStoreFile(dir: string): Promise<StoreFileFacts> {
  return withStoreFile(dir, true, (env) => factsOf(env, dir));
}

/**
 * Records in the store in `dir` (a private copy no node has open) that it was caught up with its log at
 * `at`, if that is later than what it says; writes nothing otherwise. Returns its facts as they are then.
 */
export async function markStoreFileCaughtUp(dir: string, at: number): Promise<StoreFileFacts> {
  return withStoreFile(dir, false, (env) => {
    const facts = factsOf(env, dir);
    const saved = facts.progress.caughtUpAt;
    if (saved !== null && saved >= at) return facts;
    const progress: StoreProgress = { ...facts.progress, caughtUpAt: at };
    env.transactionSync(() => {
      meta(env).putSync(PROGRESS_KEY, toSaved(progress));
    });
    return { ...facts, progress };
  });
}

async function withStoreFile<T>(dir: string, readOnly: boolean, use: (env: RootDatabase) => T): Promise<T> {
  if (!existsSync(join(dir, 'data.mdb'))) {
    throw new Kvs2Error('STORE_UNAVAILABLE', `${dir} holds no store (no data.mdb)`);
  }
  let env: RootDatabase | undefined;
  try {
    env = open({ path: dir, maxDbs: MAX_DBS, mapSize: MAP_SIZE_BYTES, readOnly });
    return use(env);
  } catch (error) {
    if (isKvs2Error(error)) throw error;
    throw new Kvs2Error('STORE_UNAVAILABLE', `cannot read the LMDB store in ${dir}: ${describeError(error)}`, {
      cause: error,
    });
  } finally {
    await env?.close();
  }
}

function factsOf(env: RootDatabase, dir: string): StoreFileFacts {
  const storeFormat = checkStoreFormat(env, `LMDB store in ${dir}`);
  const kv = env.openDB<Buffer, Buffer>({ name: 'kv', keyEncoding: 'binary', encoding: 'binary' });
  const { entryCount } = kv.getStats() as { entryCount: number };
  return {
    storeFormat,
    progress: toProgress(meta(env).get(PROGRESS_KEY)),
    loading: env.openDB<unknown, string>({ name: 'meta' }).get(LOADING_KEY) !== undefined,
    keys: entryCount,
  };
}

function meta(env: RootDatabase): Database<SavedProgress, string> {
  return env.openDB<SavedProgress, string>({ name: 'meta' });
}
