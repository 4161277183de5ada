import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import { raceAbort } from '../abort.js';
import type { Limits } from '../config/config.js';
import { MAX_BATCH_KEYS_CEILING, MAX_VALUE_BYTES_CEILING, STORE_MAX_KEY_BYTES } from '../config/limits.js';
import { abortError, describeError, isKvs2Error, Kvs2Error } from '../errors.js';
import type { Logger } from '../logger.js';
import { hasReached } from '../offsets.js';
import { ReplicaWatermark } from '../replica/applied-watermark.js';
import { decodeToken, logTagOf, mergeTokens } from '../service/consistency-token.js';
import { RequestChecks } from '../service/request-checks.js';
import { storeDirOf } from '../snapshot/data-dir.js';
import { ReadOnlyStore } from '../store/read-only-store.js';
import type { StoreProgress } from '../store/store.js';
import type { ColocatedReaderOptions, ColocatedReaderStatus, Kvs2ColocatedReader } from './colocated-api.js';
import { LocalReads, tokensOf } from './local-reads.js';
import type { ConsistencyToken, ReplicaEntry, ReplicaScanRange } from './replica-api.js';

/**
 * How often an idle reader looks whether the node's store file was replaced under it (two stat calls).
 * Waits and status() look at once as well.
 */
const CHECK_INTERVAL_MS = 1000;
/**
 * Waiting for a token polls the positions the node saves in its store with every batch it applies: a
 * process reading an LMDB store hears nothing of another's commits (LMDB has no cross-process
 * notification, and kvs2 adds no RPC or socket here). A poll is one small read in the memory map (a few
 * µs) and two stat calls, and runs only while reads wait: from 1 ms, doubling while nothing moves, to at
 * most 16 ms, so that a write the node applies at once is seen within about a millisecond, and an idle
 * wait costs some 60 polls a second. Inotify on data.mdb would wake sooner but fires on every page the node
 * writes and is not there on every file system.
 */
const POLL_MIN_MS = 1;
const POLL_MAX_MS = 16;
const WAITING = 'waiting for the node to apply the token';

/** Only keys and tokens are checked here: keys as long as a store takes (other producers may write them). */
const READER_LIMITS: Limits = {
  maxKeyBytes: STORE_MAX_KEY_BYTES,
  maxValueBytes: MAX_VALUE_BYTES_CEILING,
  maxBatchKeys: MAX_BATCH_KEYS_CEILING,
  maxReplyBytes: Number.MAX_SAFE_INTEGER,
};

/** openColocatedReader (index.ts, where it is documented). */
export function openColocated(options: ColocatedReaderOptions): Kvs2ColocatedReader {
  if (typeof options !== 'object' || options === null) throw invalid('options are missing');
  if (typeof options.dataDir !== 'string' || options.dataDir === '') throw invalid('dataDir is missing');
  const dataDir = resolve(options.dataDir);
  if (!existsSync(dataDir)) throw new Kvs2Error('STORE_UNAVAILABLE', `the data dir ${dataDir} does not exist`);
  const storeDir = storeDirOf(dataDir);
  if (!existsSync(join(storeDir, 'data.mdb'))) {
    throw new Kvs2Error(
      'STORE_UNAVAILABLE',
      `${dataDir} holds no kvs2 store (no store/data.mdb): give the --data-dir of a node that has started`,
    );
  }
  const store = ReadOnlyStore.open(storeDir);
  try {
    return new ColocatedReader(storeDir, store, options.logger ?? pino({ level: 'silent' }));
  } catch (error) {
    void store.close().catch(() => {});
    throw error;
  }
}

/**
 * A running node's store read in this process (README, "Co-located reader"). The node is the only writer;
 * this reader holds the store open read-only for as long as it lives, so that it keeps answering while the
 * node restarts (its data file stays the same). When the store's files are replaced or removed under it (a
 * data dir swapped in, wiped, restored), it notices at its next check, closes the old file at once (it never
 * answers from it again) and opens the new store as soon as a node has opened it; until then reads throw
 * STORE_UNAVAILABLE and waits go on waiting.
 */
class ColocatedReader implements Kvs2ColocatedReader {
  readonly #storeDir: string;
  readonly #logger: Logger;
  readonly #checks = new RequestChecks(READER_LIMITS);
  readonly #reads = new LocalReads(this.#checks);
  /** The node's positions as last polled, and the reads waiting for more (the node's own watermark type). */
  readonly #watermark: ReplicaWatermark;
  readonly #closeSignal = new AbortController();
  readonly #checkTimer: NodeJS.Timeout;
  #store: ReadOnlyStore | null;
  /** Why reads fail now; null while they answer from #store. */
  #unavailable: Kvs2Error | null = null;
  #reopened = 0;
  #waiting = 0;
  #pollTimer: NodeJS.Timeout | undefined;
  #pollDelayMs = POLL_MIN_MS;
  /** Resolved at every poll: reads that cannot name positions yet (no store, no log identity) look again. */
  #polled = Promise.withResolvers<void>();
  #logTag: { readonly identity: string; readonly tag: Buffer } | undefined;
  #closing: Promise<void> | undefined;

  constructor(storeDir: string, store: ReadOnlyStore, logger: Logger) {
    this.#storeDir = storeDir;
    this.#store = store;
    this.#logger = logger;
    const progress = store.progress();
    this.#watermark = new ReplicaWatermark(progress.logIdentity ?? '');
    this.#watermark.restart(progress.appliedOffsets, progress.logIdentity ?? '');
    this.#checkTimer = setInterval(() => this.#checkQuietly(), CHECK_INTERVAL_MS);
    // A reader left open must not keep the application's process alive.
    this.#checkTimer.unref();
  }

  get(key: Uint8Array): Buffer | undefined {
    return this.#reads.get(this.#readable(), key);
  }

  getEntry(key: Uint8Array): ReplicaEntry | undefined {
    return this.#reads.getEntry(this.#readable(), key);
  }

  getMany(keys: readonly Uint8Array[]): Array<Buffer | undefined> {
    return this.#reads.getMany(this.#readable(), keys);
  }

  scan(range: ReplicaScanRange, limit?: number): ReplicaEntry[] {
    return this.#reads.scan(this.#readable(), range, limit);
  }

  getAfter(
    key: Uint8Array,
    after: ConsistencyToken | readonly ConsistencyToken[],
    signal?: AbortSignal,
  ): Promise<Buffer | undefined> {
    return this.#readAfter(
      after,
      signal,
      () => this.#reads.checkKey(key, 'key'),
      (store) => this.#reads.get(store, key),
    );
  }

  getManyAfter(
    keys: readonly Uint8Array[],
    after: ConsistencyToken | readonly ConsistencyToken[],
    signal?: AbortSignal,
  ): Promise<ReadonlyArray<Buffer | undefined>> {
    return this.#readAfter(
      after,
      signal,
      () => this.#reads.checkKeys(keys),
      (store) => this.#reads.getMany(store, keys),
    );
  }

  status(): ColocatedReaderStatus {
    this.#checkOpen();
    this.#check();
    const store = this.#store;
    if (store === null || this.#unavailable !== null) {
      return {
        logIdentity: null,
        partitions: [],
        caughtUpAt: null,
        keys: 0,
        reopened: this.#reopened,
        unavailable: this.#unavailable,
      };
    }
    const progress = store.progress();
    return {
      logIdentity: progress.logIdentity,
      partitions: [...progress.appliedOffsets]
        .sort((a, b) => a[0] - b[0])
        .map(([partition, appliedOffset]) => ({ partition, appliedOffset })),
      caughtUpAt: progress.caughtUpAt,
      keys: store.keys(),
      reopened: this.#reopened,
      unavailable: null,
    };
  }

  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    clearInterval(this.#checkTimer);
    clearTimeout(this.#pollTimer);
    this.#closeSignal.abort(shuttingDown());
    const store = this.#store;
    this.#store = null;
    this.#closing = store === null ? Promise.resolve() : store.close();
    return this.#closing;
  }

  /**
   * Runs `read` once the node has applied what the tokens name, in the same turn as the look at its
   * positions: lmdb-js reads both from one read transaction, so the read sees at least those writes.
   */
  async #readAfter<T>(
    after: ConsistencyToken | readonly ConsistencyToken[],
    signal: AbortSignal | undefined,
    checkKeys: () => void,
    read: (store: ReadOnlyStore) => T,
  ): Promise<T> {
    this.#checkOpen();
    // A bad key is refused before any wait, as a node refuses the request: it never waits for its token first.
    checkKeys();
    const tokens = tokensOf(after);
    this.#checks.readOptions({ consistency: 'at-least', after: tokens });
    // A malformed token is refused now, whether or not the store can name its log yet.
    for (let i = 0; i < tokens.length; i++) {
      decodeToken(tokens[i] as Buffer, tokens.length === 1 ? 'after' : `after[${i}]`);
    }
    const stop = signal === undefined ? this.#closeSignal.signal : AbortSignal.any([signal, this.#closeSignal.signal]);
    this.#waiting++;
    try {
      for (;;) {
        if (stop.aborted) throw abortError(stop, WAITING);
        const store = this.#unavailable === null ? this.#store : null;
        const progress = store?.progress();
        if (store !== null && progress !== undefined && progress.logIdentity !== null) {
          this.#observe(progress);
          const target = mergeTokens(tokens, this.#tagOf(progress.logIdentity));
          if (hasReached(progress.appliedOffsets, target)) return read(store);
          this.#startPolling();
          await this.#watermark.waitFor(target, stop);
        } else {
          // No store to read now (replaced, loading), or one that has applied nothing yet.
          this.#startPolling();
          await raceAbort(this.#polled.promise, stop, WAITING);
        }
      }
    } finally {
      this.#waiting--;
    }
  }

  #startPolling(): void {
    if (this.#pollTimer !== undefined) return;
    this.#pollDelayMs = POLL_MIN_MS;
    this.#pollTimer = setTimeout(this.#poll, this.#pollDelayMs);
  }

  readonly #poll = (): void => {
    this.#pollTimer = undefined;
    if (this.#closing !== undefined || this.#waiting === 0) return;
    const version = this.#watermark.appliedVersion;
    const unavailable = this.#unavailable;
    this.#checkQuietly();
    const store = this.#unavailable === null ? this.#store : null;
    if (store !== null) {
      try {
        this.#observe(store.progress());
      } catch (error) {
        this.#logger.warn({ err: error }, `reading the node's positions failed: ${describeError(error)}`);
      }
    }
    const polled = this.#polled;
    this.#polled = Promise.withResolvers<void>();
    polled.resolve();
    const moved = version !== this.#watermark.appliedVersion || unavailable !== this.#unavailable;
    this.#pollDelayMs = moved ? POLL_MIN_MS : Math.min(POLL_MAX_MS, this.#pollDelayMs * 2);
    this.#pollTimer = setTimeout(this.#poll, this.#pollDelayMs);
  };

  /**
   * Moves the watermark to the positions the node saved, waking the reads they satisfy. Another log
   * identity fails the reads waiting for the old one (LOG_RECREATED), as a node's do; a store that names no
   * log (cleared for a rebuild, or new) changes nothing until it names one again.
   */
  #observe(progress: StoreProgress): void {
    const identity = progress.logIdentity;
    if (identity === null) return;
    const watermark = this.#watermark;
    const applied = watermark.appliedOffsets;
    if (identity !== watermark.logIdentity) {
      if (watermark.logIdentity !== '') {
        watermark.abandonWaiters(`the node's store in ${this.#storeDir} now holds log ${identity}`);
      }
      watermark.restart(progress.appliedOffsets, identity);
      return;
    }
    let moved = false;
    let back = applied.size > progress.appliedOffsets.size;
    for (const [partition, offset] of progress.appliedOffsets) {
      const before = applied.get(partition) ?? 0;
      if (offset > before) moved = true;
      else if (offset < before) back = true;
    }
    // Positions that went back (a rebuild from the start of the log, an older store restored): no read
    // waiting is satisfied by that; each looks again at the store's own positions when woken.
    if (back) watermark.restart(progress.appliedOffsets, identity);
    else if (moved) watermark.advance(progress.appliedOffsets);
  }

  /**
   * Looks whether the store's files are still those open: a replaced (or removed) store is closed at once
   * and the new one opened if it can be; the same store is unavailable while a node loads a snapshot into it
   * or once a newer node has moved it to a format this kvs2 cannot read.
   */
  #check(): void {
    const store = this.#store;
    if (store !== null && !store.replaced()) {
      // What follows (and a poll's look at the positions) sees the node's latest commit, not this turn's.
      store.refresh();
      try {
        store.checkFormat();
      } catch (error) {
        this.#unavailable = isKvs2Error(error) ? error : new Kvs2Error('STORE_UNAVAILABLE', describeError(error));
        return;
      }
      this.#unavailable = store.loading()
        ? new Kvs2Error(
            'STORE_UNAVAILABLE',
            `the node is loading a peer's snapshot into its store in ${this.#storeDir}: it holds part of the data ` +
              'until the load finishes',
          )
        : null;
      return;
    }
    if (store !== null) {
      this.#store = null;
      void store.close().catch(() => {});
      this.#logger.warn(`the node's store in ${this.#storeDir} was replaced or removed: closed the old one`);
    }
    try {
      this.#store = ReadOnlyStore.open(this.#storeDir);
      this.#unavailable = null;
      this.#reopened++;
      this.#logger.info(`reading the node's new store in ${this.#storeDir}`);
    } catch (error) {
      this.#unavailable = new Kvs2Error(
        isKvs2Error(error) && error.code === 'DATA_FORMAT_UNSUPPORTED' ? error.code : 'STORE_UNAVAILABLE',
        `the node's store in ${this.#storeDir} was replaced or removed under this reader, and the new one ` +
          `cannot be read yet: ${describeError(error)}`,
        { cause: error },
      );
    }
  }

  #checkQuietly(): void {
    if (this.#closing !== undefined) return;
    try {
      this.#check();
    } catch (error) {
      this.#logger.warn({ err: error }, `checking the node's store failed: ${describeError(error)}`);
    }
  }

  #readable(): ReadOnlyStore {
    this.#checkOpen();
    const store = this.#store;
    const unavailable = this.#unavailable;
    if (store !== null && unavailable === null) return store;
    // A new error per call: its stack names the read that failed.
    throw new Kvs2Error(unavailable?.code ?? 'STORE_UNAVAILABLE', unavailable?.message ?? 'no store is open', {
      cause: unavailable ?? undefined,
    });
  }

  #checkOpen(): void {
    if (this.#closing !== undefined) throw shuttingDown();
  }

  #tagOf(identity: string): Buffer {
    if (this.#logTag?.identity !== identity) this.#logTag = { identity, tag: logTagOf(identity) };
    return this.#logTag.tag;
  }
}

function shuttingDown(): Kvs2Error {
  return new Kvs2Error('SHUTTING_DOWN', 'the co-located reader is closed');
}

function invalid(message: string): Kvs2Error {
  return new Kvs2Error('INVALID_ARGUMENT', `openColocatedReader: ${message}`);
}
