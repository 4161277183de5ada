import { existsSync, readdirSync } from 'node:fs';
import { mkdir, open as openFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type Database, open, type RootDatabase } from 'lmdb';
import { describeError, isKvs2Error, Kvs2Error } from '../errors.js';
import { MAP_SIZE_BYTES, MAX_DBS, PROGRESS_KEY, type SavedProgress, toSaved } from './saved-progress.js';
import type { StoreProgress } from './store.js';
import { adoptStoreFormat } from './store-format.js';
import type { StoreEntry } from './store-snapshot.js';
import { StoredValueScratch } from './versioned-value.js';

/** What a finished load wrote. */
export interface LoadedStore {
  readonly dir: string;
  readonly keys: number;
  /** Bytes data.mdb takes on disk. */
  readonly bytesOnDisk: number;
}

/**
 * Writes a new store (in the current store format, with versions) from entries that arrive in key order, in a folder of its own, as a restore or a
 * compaction builds it before moving it into place. Every entry is appended (MDB_APPEND): LMDB then fills
 * each page completely instead of splitting it in half, so the store is as small as LMDB can make it and
 * reads touch fewer pages than in a store filled in random order.
 *
 * Nothing is synced until finish(), which writes the progress exactly as LmdbStore does, syncs data.mdb
 * and the folder, and closes the environment: a crash before that leaves a folder to throw away, never a
 * store that looks whole.
 */
export class StoreLoader {
  readonly dir: string;
  readonly #env: RootDatabase;
  readonly #kv: Database<Buffer, Buffer>;
  readonly #meta: Database<SavedProgress, string>;
  readonly #scratch = new StoredValueScratch();
  #keys = 0;
  #lastKey: Buffer | undefined;
  #done = false;

  private constructor(dir: string, env: RootDatabase) {
    this.dir = dir;
    this.#env = env;
    this.#kv = env.openDB<Buffer, Buffer>({ name: 'kv', keyEncoding: 'binary', encoding: 'binary' });
    this.#meta = env.openDB<SavedProgress, string>({ name: 'meta' });
  }

  /** Creates the store in `dir`, which must not exist or be empty. */
  static async create(dir: string): Promise<StoreLoader> {
    if (existsSync(dir) && readdirSync(dir).length > 0) {
      throw new Kvs2Error('STORE_UNAVAILABLE', `cannot load a store into ${dir}: the folder is not empty`);
    }
    let env: RootDatabase | undefined;
    try {
      await mkdir(dir, { recursive: true });
      // No sync per transaction: finish() syncs the file once, and an unfinished load is thrown away.
      env = open({ path: dir, maxDbs: MAX_DBS, mapSize: MAP_SIZE_BYTES, noSync: true });
      adoptStoreFormat(env, `LMDB store in ${dir}`);
      return new StoreLoader(dir, env);
    } catch (error) {
      await env?.close().catch(() => {});
      throw loadError(dir, error);
    }
  }

  get keys(): number {
    return this.#keys;
  }

  /**
   * Appends entries, in one transaction. Keys must be strictly increasing, within the call and after the
   * previous call's last key (LMDB's order: bytewise, a prefix before its extensions).
   */
  load(entries: readonly StoreEntry[]): void {
    if (this.#done) throw new Kvs2Error('STORE_UNAVAILABLE', `the load into ${this.dir} has ended`);
    if (entries.length === 0) return;
    const kv = this.#kv;
    let last = this.#lastKey;
    try {
      this.#env.transactionSync(() => {
        for (const { key, value, version } of entries) {
          const keyBuffer = asBuffer(key);
          if (last !== undefined && Buffer.compare(last, keyBuffer) >= 0) {
            throw new Kvs2Error('INVALID_ARGUMENT', `keys out of order: ${hexOf(keyBuffer)} after ${hexOf(last)}`);
          }
          if (!Number.isSafeInteger(version) || version < 1) {
            throw new Kvs2Error('INVALID_ARGUMENT', `key ${hexOf(keyBuffer)} has version ${version} (at least 1)`);
          }
          // lmdb-js types putSync as void; it returns false when LMDB refuses the put (MDB_KEYEXIST for an
          // append out of order). It copies the value at once, so the scratch buffer is free after it.
          const stored = this.#scratch.encode(version, value);
          const appended = kv.putSync(keyBuffer, stored, { append: true }) as unknown;
          if (appended === false) {
            throw new Kvs2Error('STORE_UNAVAILABLE', `LMDB refused to append key ${hexOf(keyBuffer)}`);
          }
          last = keyBuffer;
        }
      });
    } catch (error) {
      throw loadError(this.dir, error);
    }
    // Kept as a copy: the caller's buffers may be reused once this returns.
    this.#lastKey = Buffer.from(last as Buffer);
    this.#keys += entries.length;
  }

  /** Writes the progress, syncs everything to disk and closes the store. */
  async finish(progress: StoreProgress): Promise<LoadedStore> {
    if (this.#done) throw new Kvs2Error('STORE_UNAVAILABLE', `the load into ${this.dir} has ended`);
    this.#done = true;
    try {
      this.#env.transactionSync(() => {
        this.#meta.putSync(PROGRESS_KEY, toSaved(progress));
      });
      await this.#env.close();
      const dataFile = join(this.dir, 'data.mdb');
      const bytesOnDisk = await syncFile(dataFile);
      await syncFile(this.dir);
      return { dir: this.dir, keys: this.#keys, bytesOnDisk };
    } catch (error) {
      throw loadError(this.dir, error);
    }
  }

  /** Closes the store and removes its folder. Safe after finish() (the folder is then kept) or twice. */
  async abandon(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    await this.#env.close().catch(() => {});
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** fsyncs a file or folder; returns the bytes it takes on disk. */
export async function syncFile(path: string): Promise<number> {
  const handle = await openFile(path, 'r');
  try {
    await handle.sync();
    return (await handle.stat()).blocks * 512;
  } finally {
    await handle.close();
  }
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function hexOf(key: Buffer): string {
  return key.length > 32 ? `${key.subarray(0, 32).toString('hex')}...` : key.toString('hex');
}

function loadError(dir: string, error: unknown): Kvs2Error {
  if (isKvs2Error(error)) return error;
  return new Kvs2Error('STORE_UNAVAILABLE', `loading a store into ${dir} failed: ${describeError(error)}`, {
    cause: error,
  });
}
