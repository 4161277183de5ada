import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type Database, open, type RootDatabase } from 'lmdb';
import { describeError, isKvs2Error, Kvs2Error } from '../errors.js';
import { type LastRead, readPage, readValue } from './lmdb-reads.js';
import {
  LOADING_KEY,
  MAP_SIZE_BYTES,
  MAX_DBS,
  PROGRESS_KEY,
  type SavedProgress,
  toProgress,
} from './saved-progress.js';
import type { KeyValueReader, ScanPage, ScanRange, StoreProgress } from './store.js';
import { checkStoreFormat, UNVERSIONED_STORE_FORMAT } from './store-format.js';

/** Which files a store's path names: `dev:inode` of data.mdb and lock.mdb (null for a file that is gone). */
interface StoreFiles {
  readonly data: string | null;
  readonly lock: string | null;
}

/** Attempts at opening when the files are replaced between the look before and the look after. */
const OPEN_ATTEMPTS = 3;

/**
 * A store another process (a running node) owns, opened read-only: reads answer what that process has
 * committed, its saved progress says how far it applied the log, and nothing is ever written to its files.
 *
 * It opens the environment as the node does (the same map size and database count: a second process maps
 * the same file, and a smaller map could not hold it) with MDB_RDONLY: data.mdb is opened read-only. LMDB
 * still needs its lock file: lock.mdb holds the reader slot this process takes (so that the node never
 * reuses pages a read transaction here still sees), which is how readers in other processes are safe at all.
 * LMDB would create a missing lock file, so a store without one (just restored or compacted: no node has
 * opened it yet) is refused, as is one the node is still loading (peer bootstrap), and a format this kvs2
 * cannot read. Each read transaction (lmdb-js renews one per event-loop turn) sees the node's latest commit.
 */
export class ReadOnlyStore implements KeyValueReader {
  readonly description: string;
  readonly #dir: string;
  readonly #files: StoreFiles;
  readonly #env: RootDatabase;
  readonly #kv: Database<Buffer, Buffer>;
  readonly #meta: Database<SavedProgress | number, string>;
  readonly #lastRead: LastRead = { version: 0 };
  #closed = false;

  private constructor(dir: string, files: StoreFiles, env: RootDatabase) {
    this.description = `LMDB store in ${dir} (read-only)`;
    this.#dir = dir;
    this.#files = files;
    this.#env = env;
    // Read-only, lmdb-js answers undefined for a database the file does not hold yet: a node creates both as
    // it opens a new store, and a reader that came in between looks again later.
    const kv = env.openDB<Buffer, Buffer>({ name: 'kv', keyEncoding: 'binary', encoding: 'binary' }) as
      | Database<Buffer, Buffer>
      | undefined;
    const meta = env.openDB<SavedProgress | number, string>({ name: 'meta' }) as
      | Database<SavedProgress | number, string>
      | undefined;
    if (kv === undefined || meta === undefined) {
      throw new Kvs2Error('STORE_UNAVAILABLE', `the store in ${dir} is still being created by its node`);
    }
    this.#kv = kv;
    this.#meta = meta;
  }

  /**
   * Opens the store in `dir` read-only. STORE_UNAVAILABLE when there is no store, when no node has opened
   * it yet (no lock.mdb), while a node is loading a snapshot into it, or while it is in store format 1 (no
   * versions) until its node has upgraded it; DATA_FORMAT_UNSUPPORTED for a format
   * this kvs2 does not read. Creates nothing (lmdb-js would create a missing folder: it is checked first).
   */
  static open(dir: string): ReadOnlyStore {
    for (let attempt = 1; ; attempt++) {
      const before = refuseUnopenable(dir);
      let env: RootDatabase | undefined;
      try {
        env = open({ path: dir, maxDbs: MAX_DBS, mapSize: MAP_SIZE_BYTES, readOnly: true });
        // The files opened are those looked at only if the path still names them afterwards.
        if (!sameFiles(before, filesOf(dir))) {
          if (attempt < OPEN_ATTEMPTS) {
            void env.close().catch(() => {});
            continue;
          }
          throw new Kvs2Error('STORE_UNAVAILABLE', `the store in ${dir} kept being replaced while it was opened`);
        }
        refuseUnversioned(checkStoreFormat(env, `LMDB store in ${dir}`), dir);
        const store = new ReadOnlyStore(dir, before, env);
        if (store.loading()) {
          throw new Kvs2Error(
            'STORE_UNAVAILABLE',
            `the store in ${dir} is being loaded from a peer's snapshot (a node bootstrapping): it holds part ` +
              'of the data; open it once the node has finished loading',
          );
        }
        return store;
      } catch (error) {
        void env?.close().catch(() => {});
        if (isKvs2Error(error)) throw error;
        throw new Kvs2Error(
          'STORE_UNAVAILABLE',
          `cannot open the LMDB store in ${dir} read-only: ${describeError(error)}`,
          {
            cause: error,
          },
        );
      }
    }
  }

  get(key: Buffer): Buffer | undefined {
    try {
      return readValue(this.#kv, key, this.#lastRead);
    } catch (error) {
      throw this.#readError(error);
    }
  }

  get lastVersion(): number {
    return this.#lastRead.version;
  }

  scan(range: ScanRange): ScanPage {
    try {
      return readPage(this.#kv, range);
    } catch (error) {
      throw this.#readError(error);
    }
  }

  /** What the node has applied, as saved with the data it describes (read now, from this turn's snapshot). */
  progress(): StoreProgress {
    try {
      const saved = this.#meta.get(PROGRESS_KEY);
      return toProgress(typeof saved === 'object' ? saved : undefined);
    } catch (error) {
      throw this.#readError(error);
    }
  }

  /**
   * Drops this process's cached read transaction, so that the next read sees every commit the node has made
   * (lmdb-js otherwise renews it once per event-loop turn).
   */
  refresh(): void {
    this.#env.resetReadTxn();
  }

  /**
   * Checks the store's format again: a newer kvs2 node may move the store it owns to a format this kvs2
   * cannot read. DATA_FORMAT_UNSUPPORTED then (STORE_UNAVAILABLE for one without versions: not ready).
   */
  checkFormat(): void {
    refuseUnversioned(checkStoreFormat(this.#env, `LMDB store in ${this.#dir}`), this.#dir);
  }

  /** Whether a node is loading a peer's snapshot into the store (it holds part of one). */
  loading(): boolean {
    try {
      return this.#meta.get(LOADING_KEY) !== undefined;
    } catch (error) {
      throw this.#readError(error);
    }
  }

  /** Keys held, from the count LMDB keeps in the tree's root. */
  keys(): number {
    try {
      return (this.#kv.getStats() as { entryCount: number }).entryCount;
    } catch (error) {
      throw this.#readError(error);
    }
  }

  /**
   * Whether the store's path no longer names the files this view has open: data.mdb (or lock.mdb) was
   * replaced (a restore, a compaction, a data dir swapped in) or removed (wiped). Two stat calls.
   */
  replaced(): boolean {
    return !sameFiles(this.#files, filesOf(this.#dir));
  }

  /** Ends the view (its reader slot with it). Safe to call more than once. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#env.close();
  }

  #readError(error: unknown): Kvs2Error {
    if (this.#closed) return new Kvs2Error('STORE_UNAVAILABLE', `${this.description} is closed`);
    return new Kvs2Error('STORE_UNAVAILABLE', `${this.description}: read failed: ${describeError(error)}`, {
      cause: error,
    });
  }
}

/**
 * A store of format 1 holds values without versions until its node (a newer kvs2) has upgraded it as it
 * starts: not ready yet, as a store being loaded is not.
 */
function refuseUnversioned(format: number, dir: string): void {
  if (format !== UNVERSIONED_STORE_FORMAT) return;
  throw new Kvs2Error(
    'STORE_UNAVAILABLE',
    `the store in ${dir} is in store format ${format} (no versions): its node upgrades it as it starts; open ` +
      'it once the node has',
  );
}

/** The store's files, or STORE_UNAVAILABLE when opening it would create something or read nothing. */
function refuseUnopenable(dir: string): StoreFiles {
  const files = filesOf(dir);
  if (files.data === null) {
    const where = existsSync(dir) ? `${dir} holds no store (no data.mdb)` : `${dir} does not exist`;
    throw new Kvs2Error('STORE_UNAVAILABLE', `no kvs2 store to read: ${where}; is a node running on this data dir?`);
  }
  if (files.lock === null) {
    throw new Kvs2Error(
      'STORE_UNAVAILABLE',
      `no node has opened the store in ${dir} yet (it has no lock.mdb: it was just restored or compacted); ` +
        "start the node on it first (reading it would create the lock file in the node's data dir)",
    );
  }
  return files;
}

function filesOf(dir: string): StoreFiles {
  return { data: fileId(join(dir, 'data.mdb')), lock: fileId(join(dir, 'lock.mdb')) };
}

function fileId(path: string): string | null {
  const stats = statSync(path, { bigint: true, throwIfNoEntry: false });
  return stats === undefined ? null : `${stats.dev}:${stats.ino}`;
}

function sameFiles(a: StoreFiles, b: StoreFiles): boolean {
  return a.data === b.data && a.lock === b.lock;
}
