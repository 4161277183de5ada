import { mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type Database, open, type RootDatabase, type Transaction } from 'lmdb';
import { describeError, isKvs2Error, Kvs2Error } from '../errors.js';
import { type CommitPromise, untilFlushed } from '../lmdb/durability.js';
import type { Offsets } from '../offsets.js';
import { type LastRead, type ReadAt, readPage, readValue } from './lmdb-reads.js';
import { keyOrderedLeafPages, type PageFill } from './page-fill.js';
import {
  LOADING_KEY,
  MAP_SIZE_BYTES,
  MAX_DBS,
  PROGRESS_KEY,
  type SavedProgress,
  toProgress,
  toSaved,
  VERSIONS_UPGRADE_KEY,
} from './saved-progress.js';
import type {
  Applied,
  ScanPage,
  ScanRange,
  Store,
  StoreProgress,
  StoreStats,
  StoreWrite,
  UnversionedUpgrade,
  UnversionedUpgradeDone,
} from './store.js';
import {
  adoptStoreFormat,
  checkStoreFormat,
  STORE_FORMAT_KEY,
  STORE_FORMAT_VERSION,
  UNVERSIONED_STORE_FORMAT,
} from './store-format.js';
import type { SnapshotSource, StoreEntry, StoreFileSource, StoreSnapshot } from './store-snapshot.js';
import { readVersion, StoredValueScratch, storedLength, VERSION_BYTES, writeVersion } from './versioned-value.js';

/** Entries gathered before one load transaction: each commit is synced, so few large ones. */
const LOAD_BATCH_BYTES = 8 * 1024 * 1024;
/** Values rewritten per transaction by an upgrade of a format-1 store. */
const UPGRADE_BATCH_ENTRIES = 10_000;
const UPGRADE_BATCH_BYTES = 8 * 1024 * 1024;

export interface LmdbStoreOptions {
  /**
   * Commit the replica's writes (apply(), markCaughtUp()) on the calling thread, synchronously, instead of
   * handing them to lmdb-js's batching writer on libuv's thread pool. For a thread that does nothing but
   * write (the in-process replica's worker): its commits, the costliest part of applying (LMDB copies every
   * page a random key touches), then run where that thread runs, and an application that places the
   * thread (or a scheduler with a free core) moves all of the replica's work off its reading thread's core.
   * Each commit is synced to disk before apply() returns (lmdb-js's transactionSync): `flushed` is then
   * already resolved. (lmdb-js's deferred sync of a synchronous commit reports its end to no promise, so
   * it is not used.) Never for a thread that serves: it stops while LMDB writes and syncs. Default false.
   */
  readonly inlineCommits?: boolean;
}

/** A snapshot being loaded into an empty store (LmdbStore.beginLoad()). */
export interface StoreLoad {
  /** Adds entries, whose keys follow every key added before in key order. */
  add(entries: readonly StoreEntry[]): void;
  /** Writes the snapshot's progress: the store is then whole, and resumes from there. */
  finish(progress: StoreProgress): Promise<void>;
  /** Empties the store again (a snapshot found damaged, a peer gone mid-stream). */
  abandon(): Promise<void>;
}

class LmdbStoreLoad implements StoreLoad {
  readonly #store: LmdbStore;
  #pending: StoreEntry[] = [];
  #pendingBytes = 0;
  #lastKey: Buffer | undefined;

  constructor(store: LmdbStore) {
    this.#store = store;
  }

  add(entries: readonly StoreEntry[]): void {
    for (const entry of entries) {
      this.#pending.push(entry);
      this.#pendingBytes += entry.key.length + entry.value.length;
    }
    if (this.#pendingBytes >= LOAD_BATCH_BYTES) this.#flush();
  }

  async finish(progress: StoreProgress): Promise<void> {
    this.#flush();
    await this.#store.finishLoad(progress);
  }

  abandon(): Promise<void> {
    this.#pending = [];
    return this.#store.abandonLoad();
  }

  #flush(): void {
    if (this.#pending.length === 0) return;
    this.#lastKey = this.#store.appendLoaded(this.#pending, this.#lastKey);
    this.#pending = [];
    this.#pendingBytes = 0;
  }
}

/** A present key's version is at least 1 (0 means absent): anything else is damage, never stored. */
function checkVersion(version: number): void {
  if (!Number.isSafeInteger(version) || version < 1) {
    throw new Kvs2Error(
      'INCONSISTENT_STATE',
      `an entry with version ${version} cannot be stored (versions start at 1)`,
    );
  }
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * The local materialised copy of the log, in LMDB. User keys are stored as raw bytes in the `kv` database,
 * each value behind its 8-byte version (store format 2, versioned-value.ts); the applied offsets live in
 * `meta`, written in the same transaction as the data they describe, so a restart resumes exactly where
 * the data stops.
 *
 * Reads are synchronous: LMDB is memory-mapped, and a read costs less than a trip through the event loop.
 */
export class LmdbStore implements Store, SnapshotSource, StoreFileSource {
  readonly description: string;
  readonly dir: string;
  readonly #dataFile: string;
  readonly #env: RootDatabase;
  readonly #kv: Database<Buffer, Buffer>;
  readonly #meta: Database<SavedProgress, string>;
  #progress: StoreProgress;
  /** The version of the last get(), in an object reused by every read. */
  readonly #lastRead: LastRead = { version: 0 };
  readonly #scratch = new StoredValueScratch();
  #unversioned: boolean;
  /** Snapshots not yet closed: closing the store ends their read transactions first. */
  readonly #snapshots = new Set<LmdbSnapshot>();
  /** Copies of the store's file under way (copyCompacted()). */
  readonly #copies = new Set<Promise<void>>();
  /** Whether opening found a snapshot load that never finished, and cleared the store (see beginLoad()). */
  readonly clearedUnfinishedLoad: boolean;
  #loading = false;
  #closed = false;
  /** The read transaction reads use since the last advanceReads(); before the first, lmdb-js's own. */
  #readAt: ReadAt;
  readonly #inlineCommits: boolean;

  private constructor(dir: string, env: RootDatabase, format: number, reader = false, inlineCommits = false) {
    this.description = `LMDB store in ${dir}`;
    this.dir = dir;
    this.#dataFile = join(dir, 'data.mdb');
    this.#env = env;
    this.#kv = env.openDB<Buffer, Buffer>({ name: 'kv', keyEncoding: 'binary', encoding: 'binary' });
    this.#meta = env.openDB<SavedProgress, string>({ name: 'meta' });
    // A reader beside the writer (a serving worker) leaves an unfinished load to the writer, which owns it.
    this.clearedUnfinishedLoad = !reader && this.#loadMarker().get(LOADING_KEY) !== undefined;
    if (this.clearedUnfinishedLoad) {
      // A load cut short holds part of a snapshot: its keys would be served, and deletes after them missed.
      env.transactionSync(() => this.#clearSync());
    }
    this.#progress = toProgress(this.#meta.get(PROGRESS_KEY));
    this.#unversioned = format === UNVERSIONED_STORE_FORMAT;
    this.#inlineCommits = inlineCommits;
  }

  /**
   * Opens (or creates) the store a node's replica writes. A store of format 1 (no versions) opens
   * `unversioned`: its replica upgrades it before anything reads it (upgradeUnversioned()).
   */
  static open(dir: string, options: LmdbStoreOptions = {}): LmdbStore {
    let env: RootDatabase | undefined;
    try {
      mkdirSync(dir, { recursive: true });
      env = open({ path: dir, maxDbs: MAX_DBS, separateFlushed: true, mapSize: MAP_SIZE_BYTES });
      const format = adoptStoreFormat(env, `LMDB store in ${dir}`);
      return new LmdbStore(dir, env, format, false, options.inlineCommits ?? false);
    } catch (error) {
      void env?.close().catch(() => {});
      if (isKvs2Error(error)) throw error;
      throw new Kvs2Error('STORE_UNAVAILABLE', `cannot open LMDB store in ${dir}: ${describeError(error)}`, {
        cause: error,
      });
    }
  }

  /**
   * Another thread of this process that serves reads from the store a node's replica writes (a serving
   * worker): the same LMDB environment (lmdb-js shares it within a process), its format checked, nothing
   * written. Call advanceReads() after each commit the writer reports, before reading what it committed.
   * A store its writer has not upgraded to versions yet (format 1) is not ready: STORE_UNAVAILABLE.
   */
  static openReader(dir: string): LmdbStore {
    let env: RootDatabase | undefined;
    try {
      env = open({ path: dir, maxDbs: MAX_DBS, separateFlushed: true, mapSize: MAP_SIZE_BYTES });
      const format = checkStoreFormat(env, `LMDB store in ${dir}`);
      if (format === UNVERSIONED_STORE_FORMAT) {
        throw new Kvs2Error(
          'STORE_UNAVAILABLE',
          `the store in ${dir} is in format ${format} (no versions) until its node has upgraded it`,
        );
      }
      return new LmdbStore(dir, env, format, true);
    } catch (error) {
      void env?.close().catch(() => {});
      if (isKvs2Error(error)) throw error;
      throw new Kvs2Error('STORE_UNAVAILABLE', `cannot open LMDB store in ${dir}: ${describeError(error)}`, {
        cause: error,
      });
    }
  }

  /**
   * The progress saved with the data reads see now (the read transaction of the last advanceReads()): what
   * a reader beside the writer (a serving worker) may call applied, to the offset, whatever the writer has
   * committed since.
   */
  progressOfReads(): StoreProgress {
    try {
      return toProgress(this.#meta.get(PROGRESS_KEY, this.#readAt));
    } catch (error) {
      throw this.#readError(error);
    }
  }

  advanceReads(): void {
    if (this.#closed) return;
    const before = this.#readAt;
    // A fresh read transaction, begun now: lmdb-js's current one may date from earlier in this turn.
    this.#env.resetReadTxn();
    this.#readAt = { transaction: this.#env.useReadTransaction() };
    before?.transaction.done();
  }

  get unversioned(): boolean {
    return this.#unversioned;
  }

  get(key: Buffer): Buffer | undefined {
    if (this.#unversioned) throw this.#notUpgraded();
    try {
      return readValue(this.#kv, key, this.#lastRead, this.#readAt);
    } catch (error) {
      throw this.#readError(error);
    }
  }

  get lastVersion(): number {
    return this.#lastRead.version;
  }

  scan(range: ScanRange): ScanPage {
    if (this.#unversioned) throw this.#notUpgraded();
    try {
      return readPage(this.#kv, range, this.#readAt);
    } catch (error) {
      throw this.#readError(error);
    }
  }

  progress(): StoreProgress {
    return this.#progress;
  }

  /**
   * Keys from the kv database's own count (LMDB keeps it in the tree's root, so no scan); bytes from the
   * blocks data.mdb has allocated, which is what the disk holds whatever the file's apparent size.
   */
  stats(): StoreStats {
    try {
      const { entryCount } = this.#kv.getStats() as { entryCount: number };
      const file = statSync(this.#dataFile);
      return { keys: entryCount, bytesOnDisk: file.blocks * 512 };
    } catch (error) {
      throw this.#readError(error);
    }
  }

  /**
   * How full the leaf pages are against a key-ordered rewrite (page-fill.ts), from LMDB's counts and the
   * sizes of the first `sample` entries: what tells whether compacting the store pays.
   */
  pageFill(sample = 2_000): PageFill {
    try {
      const stats = this.#kv.getStats() as { entryCount: number; treeLeafPageCount: number; pageSize: number };
      const sizes: Array<{ keyBytes: number; valueBytes: number }> = [];
      for (const { key, value } of this.#kv.getRange({ limit: sample })) {
        sizes.push({ keyBytes: key.length, valueBytes: value.length });
      }
      return {
        entries: stats.entryCount,
        leafPages: stats.treeLeafPageCount,
        keyOrderedLeafPages: keyOrderedLeafPages(stats.entryCount, stats.pageSize, sizes),
      };
    } catch (error) {
      throw this.#readError(error);
    }
  }

  async apply(writes: readonly StoreWrite[], appliedOffsets: Offsets, logIdentity: string): Promise<Applied> {
    if (this.#unversioned) throw this.#notUpgraded();
    // lmdb-js keeps a reference to each value until its batch commits: the versioned values of the whole
    // batch share one buffer, one allocation per batch rather than one per key.
    let bytes = 0;
    for (const write of writes) if (write.value !== null) bytes += storedLength(write.value.length);
    const stored = Buffer.allocUnsafe(bytes);
    const offsets = new Map(this.#progress.appliedOffsets);
    for (const [partition, offset] of appliedOffsets) offsets.set(partition, offset);
    const progress: StoreProgress = { ...this.#progress, logIdentity, appliedOffsets: offsets };
    const kv = this.#kv;
    const meta = this.#meta;
    const writeAll = (): void => {
      let at = 0;
      for (const write of writes) {
        if (write.value === null) {
          kv.remove(write.key);
          continue;
        }
        const end = at + storedLength(write.value.length);
        writeVersion(stored, at, write.version);
        write.value.copy(stored, at + VERSION_BYTES);
        kv.put(write.key, stored.subarray(at, end));
        at = end;
      }
      meta.put(PROGRESS_KEY, toSaved(progress));
    };
    if (this.#inlineCommits) return this.#commitInline(writeAll, progress);
    // Progress is tracked as queued, not as committed: lmdb-js commits writes in the order they are
    // queued, so a later markCaughtUp must build on this one, not on what committed before it.
    this.#progress = progress;
    let commit: CommitPromise<boolean>;
    try {
      commit = kv.batch(writeAll) as CommitPromise<boolean>;
      await commit;
    } catch (error) {
      throw this.#writeError(error);
    }
    const flushed = untilFlushed(commit).then(
      () => undefined,
      (error: unknown) => Promise.reject(this.#writeError(error)),
    );
    // The caller may never look at `flushed`; an unobserved rejection must not crash the process.
    flushed.catch(() => {});
    return { flushed };
  }

  /**
   * Runs `write` in a write transaction committed and synced on this thread (LmdbStoreOptions.inlineCommits);
   * `progress` becomes the store's once it committed. Nothing is queued in lmdb-js's batches in this mode,
   * so commits happen in the order of the calls.
   */
  #commitInline(write: () => void, progress: StoreProgress): Applied {
    try {
      this.#env.transactionSync(write);
    } catch (error) {
      throw this.#writeError(error);
    }
    this.#progress = progress;
    return { flushed: Promise.resolve() };
  }

  /**
   * A consistent snapshot of the whole store (store-snapshot.ts): progress, key count and entries from one
   * LMDB read transaction. Reads and the replica go on meanwhile. The caller closes it.
   */
  snapshot(): StoreSnapshot {
    if (this.#closed) throw new Kvs2Error('STORE_UNAVAILABLE', `${this.description} is closed`);
    if (this.#unversioned) throw this.#notUpgraded();
    let transaction: Transaction | undefined;
    try {
      transaction = this.#env.useReadTransaction();
      const storeFormat = this.#env.openDB<unknown, string>({ name: 'meta' }).get(STORE_FORMAT_KEY, { transaction });
      const progress = toProgress(this.#meta.get(PROGRESS_KEY, { transaction }));
      // Counted in the snapshot's own transaction (lmdb-js counts in native code: ~50 ms per million keys).
      // The count LMDB keeps in the tree's root (getStats) is read outside any transaction we hold: a commit
      // from the replica, on lmdb-js's writer thread or in the node beside a serving worker, could land in
      // between, and the encoder would then refuse the snapshot it streams for its count (INCONSISTENT_STATE).
      const keys = this.#kv.getKeysCount({ transaction });
      const snapshot: LmdbSnapshot = new LmdbSnapshot(this.description, this.#kv, transaction, {
        storeFormat: typeof storeFormat === 'number' ? storeFormat : STORE_FORMAT_VERSION,
        progress,
        keys,
        onClose: () => this.#snapshots.delete(snapshot),
      });
      this.#snapshots.add(snapshot);
      return snapshot;
    } catch (error) {
      transaction?.done();
      throw this.#readError(error);
    }
  }

  async copyCompacted(target: string): Promise<void> {
    if (this.#closed) throw new Kvs2Error('STORE_UNAVAILABLE', `${this.description} is closed`);
    if (this.#unversioned) throw this.#notUpgraded();
    const copy = this.#env.backup(target, true);
    // The copy runs on a thread of its own with the environment: close() waits for it before closing that.
    this.#copies.add(copy);
    try {
      await copy;
    } catch (error) {
      throw new Kvs2Error('STORE_UNAVAILABLE', `${this.description}: copying it failed: ${describeError(error)}`, {
        cause: error,
      });
    } finally {
      this.#copies.delete(copy);
    }
  }

  async markCaughtUp(at: number): Promise<void> {
    const progress: StoreProgress = { ...this.#progress, caughtUpAt: at };
    if (this.#inlineCommits) {
      this.#commitInline(() => this.#meta.put(PROGRESS_KEY, toSaved(progress)), progress);
      return;
    }
    this.#progress = progress;
    try {
      await this.#meta.put(PROGRESS_KEY, toSaved(progress));
    } catch (error) {
      throw this.#writeError(error);
    }
  }

  async flushed(): Promise<void> {
    // Inline commits are synced as they commit.
    if (this.#inlineCommits) return;
    // An empty batch queues behind every earlier write; its flush covers theirs.
    await untilFlushed(this.#kv.batch(() => {}) as CommitPromise<boolean>);
  }

  /**
   * Starts filling this store, which must be empty, with a snapshot's entries in key order (a new node
   * bootstrapping from a peer). Entries are appended (MDB_APPEND: full pages, as compact as a restored
   * store) and visible to reads as they land, as during any bootstrap; the snapshot's progress is written
   * only by finish(). Until then a marker says a load is under way: a store opened with it (the process died
   * mid-load) is cleared, never resumed with part of a snapshot.
   */
  beginLoad(): StoreLoad {
    if (this.#closed) throw new Kvs2Error('STORE_UNAVAILABLE', `${this.description} is closed`);
    if (this.#unversioned) throw this.#notUpgraded();
    const { logIdentity, appliedOffsets, caughtUpAt } = this.#progress;
    if (
      this.#loading ||
      logIdentity !== null ||
      appliedOffsets.size > 0 ||
      caughtUpAt !== null ||
      this.stats().keys > 0
    ) {
      throw new Kvs2Error(
        'INCONSISTENT_STATE',
        `${this.description} is not empty: a snapshot is loaded only into an empty store`,
      );
    }
    this.#loading = true;
    return new LmdbStoreLoad(this);
  }

  /** Appends one batch of a load, with the marker, in one transaction. */
  appendLoaded(entries: readonly StoreEntry[], last: Buffer | undefined): Buffer | undefined {
    let previous = last;
    try {
      this.#env.transactionSync(() => {
        this.#loadMarker().putSync(LOADING_KEY, 1);
        for (const { key, value, version } of entries) {
          const keyBuffer = toBuffer(key);
          if (previous !== undefined && Buffer.compare(previous, keyBuffer) >= 0) {
            throw new Kvs2Error('INVALID_ARGUMENT', 'snapshot keys out of order');
          }
          checkVersion(version);
          // putSync copies the value at once: the scratch buffer is free again after it.
          const stored = this.#scratch.encode(version, value);
          if ((this.#kv.putSync(keyBuffer, stored, { append: true }) as unknown) === false) {
            throw new Kvs2Error('STORE_UNAVAILABLE', 'LMDB refused to append a snapshot key');
          }
          previous = keyBuffer;
        }
      });
    } catch (error) {
      throw isKvs2Error(error) ? error : this.#writeError(error);
    }
    return previous === undefined ? undefined : Buffer.from(previous);
  }

  /** Ends a load: its progress written and the marker removed in one transaction, then flushed. */
  async finishLoad(progress: StoreProgress): Promise<void> {
    try {
      this.#env.transactionSync(() => {
        this.#meta.putSync(PROGRESS_KEY, toSaved(progress));
        this.#loadMarker().removeSync(LOADING_KEY);
      });
      await this.flushed();
    } catch (error) {
      throw this.#writeError(error);
    } finally {
      this.#loading = false;
    }
    this.#progress = progress;
  }

  /** Throws a load away: the store is empty again. */
  async abandonLoad(): Promise<void> {
    this.#loading = false;
    await this.clear();
  }

  async clear(): Promise<void> {
    try {
      // One transaction, so a crash cannot leave old data behind progress that says "start over".
      this.#env.transactionSync(() => this.#clearSync());
      await this.flushed();
    } catch (error) {
      throw this.#writeError(error);
    }
    this.#progress = toProgress(undefined);
  }

  #clearSync(): void {
    this.#kv.clearSync();
    this.#meta.removeSync(PROGRESS_KEY);
    this.#loadMarker().removeSync(LOADING_KEY);
  }

  upgradeUnversioned(upgrade: UnversionedUpgrade): UnversionedUpgradeDone {
    if (this.#closed) throw new Kvs2Error('STORE_UNAVAILABLE', `${this.description} is closed`);
    const keys = this.stats().keys;
    if (!this.#unversioned) return { upgrade, keys, version: null };
    const markers = this.#env.openDB<unknown, string>({ name: 'meta' });
    try {
      if (upgrade === 'clear') {
        this.#env.transactionSync(() => {
          this.#clearSync();
          markers.removeSync(VERSIONS_UPGRADE_KEY);
          markers.putSync(STORE_FORMAT_KEY, STORE_FORMAT_VERSION);
        });
        this.#progress = toProgress(undefined);
        this.#upgraded();
        return { upgrade, keys, version: null };
      }
      // The next offset the store would apply is at least every key's real version and below any later
      // write's; it does not change while the upgrade runs (or between an upgrade cut short and its
      // resumption), so every key gets the same one.
      const version = Math.max(1, this.#progress.appliedOffsets.get(0) ?? 0);
      const saved = markers.get(VERSIONS_UPGRADE_KEY);
      let after: Buffer | undefined = typeof saved === 'string' ? Buffer.from(saved, 'hex') : undefined;
      for (;;) {
        // Read outside the write transaction (values after `after` are still unversioned), then rewritten.
        this.#env.resetReadTxn();
        const batch: Array<{ key: Buffer; value: Buffer }> = [];
        let bytes = 0;
        for (const entry of this.#kv.getRange(after === undefined ? {} : { start: after })) {
          if (after !== undefined && entry.key.equals(after)) continue;
          batch.push(entry);
          bytes += entry.key.length + entry.value.length;
          if (batch.length >= UPGRADE_BATCH_ENTRIES || bytes >= UPGRADE_BATCH_BYTES) break;
        }
        const last = batch.at(-1);
        this.#env.transactionSync(() => {
          for (const { key, value } of batch) this.#kv.putSync(key, this.#scratch.encode(version, value));
          if (last === undefined) {
            markers.removeSync(VERSIONS_UPGRADE_KEY);
            markers.putSync(STORE_FORMAT_KEY, STORE_FORMAT_VERSION);
          } else {
            markers.putSync(VERSIONS_UPGRADE_KEY, last.key.toString('hex'));
          }
        });
        if (last === undefined) break;
        after = last.key;
      }
      this.#upgraded();
      return { upgrade, keys, version };
    } catch (error) {
      throw isKvs2Error(error) ? error : this.#writeError(error);
    }
  }

  /** Reads see the upgraded store from now on (a read transaction begun before would not). */
  #upgraded(): void {
    this.#unversioned = false;
    this.#env.resetReadTxn();
    if (this.#readAt !== undefined) this.advanceReads();
  }

  #notUpgraded(): Kvs2Error {
    return new Kvs2Error(
      'STORE_UNAVAILABLE',
      `${this.description} is in store format ${UNVERSIONED_STORE_FORMAT} (no versions): its replica upgrades ` +
        'it before it is read or written',
    );
  }

  #loadMarker(): Database<number, string> {
    return this.#env.openDB<number, string>({ name: 'meta' });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // An open transaction (and its cursor) must end before its environment closes.
    for (const snapshot of [...this.#snapshots]) snapshot.close();
    this.#readAt?.transaction.done();
    this.#readAt = undefined;
    await Promise.allSettled(this.#copies);
    await this.#env.flushed;
    await this.#env.close();
  }

  #readError(error: unknown): Kvs2Error {
    return new Kvs2Error('STORE_UNAVAILABLE', `${this.description}: read failed: ${describeError(error)}`, {
      cause: error,
    });
  }

  #writeError(error: unknown): Kvs2Error {
    return new Kvs2Error('STORE_UNAVAILABLE', `${this.description}: write failed: ${describeError(error)}`, {
      cause: error,
    });
  }
}

/** A read transaction held open for a snapshot, with the cursor that walks the kv database in key order. */
class LmdbSnapshot implements StoreSnapshot {
  readonly storeFormat: number;
  readonly progress: StoreProgress;
  readonly keys: number;
  readonly #description: string;
  readonly #onClose: () => void;
  readonly #kv: Database<Buffer, Buffer>;
  readonly #transaction: Transaction;
  #cursor: Iterator<{ key: Buffer; value: Buffer }> | undefined;
  #started = false;
  #closed = false;

  constructor(
    description: string,
    kv: Database<Buffer, Buffer>,
    transaction: Transaction,
    facts: { storeFormat: number; progress: StoreProgress; keys: number; onClose: () => void },
  ) {
    this.#description = description;
    this.#onClose = facts.onClose;
    this.#kv = kv;
    this.#transaction = transaction;
    this.storeFormat = facts.storeFormat;
    this.progress = facts.progress;
    this.keys = facts.keys;
  }

  *entries(): IterableIterator<StoreEntry> {
    if (this.#started) throw new Kvs2Error('STORE_UNAVAILABLE', `a snapshot of ${this.#description} is read once`);
    this.#started = true;
    this.#checkOpen();
    this.#cursor = this.#kv.getRange({ transaction: this.#transaction })[Symbol.iterator]();
    for (;;) {
      this.#checkOpen();
      let next: IteratorResult<{ key: Buffer; value: Buffer }>;
      try {
        next = this.#cursor.next();
      } catch (error) {
        throw new Kvs2Error(
          'STORE_UNAVAILABLE',
          `${this.#description}: reading a snapshot failed: ${describeError(error)}`,
          { cause: error },
        );
      }
      if (next.done === true) {
        this.#cursor = undefined;
        return;
      }
      const { key, value } = next.value;
      yield { key, value: value.subarray(VERSION_BYTES), version: readVersion(value) };
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // The cursor first: lmdb-js must not abort a transaction that still has a cursor open on it.
    const cursor = this.#cursor;
    this.#cursor = undefined;
    try {
      cursor?.return?.();
    } finally {
      this.#transaction.done();
      this.#onClose();
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #checkOpen(): void {
    if (this.#closed) {
      throw new Kvs2Error('STORE_UNAVAILABLE', `a snapshot of ${this.#description} was closed while being read`);
    }
  }
}
