import { setTimeout as sleep } from 'node:timers/promises';
import { STORE_MAX_KEY_BYTES } from '../config/limits.js';
import { describeError, isKvs2Error, Kvs2Error } from '../errors.js';
import type { Log, LogBatch, LogRecord } from '../log/log.js';
import type { Logger } from '../logger.js';
import type { Offsets } from '../offsets.js';
import { hasReached, lagBehind, offsetsForLog } from '../offsets.js';
import type { Store, StoreWrite } from '../store/store.js';
import { type AppliedWatermark, ReplicaWatermark } from './applied-watermark.js';
import { ChangeBroadcaster, type ChangeFeed } from './change-feed.js';
import { ReplicaProgress, type ReplicaProgressUpdates, type ReplicaProgressView } from './replica-progress.js';
import { planResume } from './resume-plan.js';
import { upgradeUnversionedStore } from './store-upgrade.js';

export interface ReplicaOptions {
  readonly log: Log;
  readonly store: Store;
  readonly logger: Logger;
  /** Called when the replica becomes caught up with the log, and when it stops being so (a rebuild). */
  readonly onCaughtUpChange?: (caughtUp: boolean) => void;
  /** Called once if the replica meets a state it cannot repair (the node should stop). */
  readonly onFatal: (error: Kvs2Error) => void;
  /** How often the replica compares itself with the log's end: lag in the log, catch-up time in the store. */
  readonly progressIntervalMs?: number;
  /** How often the log's end is asked for, so that the lag in records stays fresh (default 1 s). */
  readonly endRefreshMs?: number;
  /** Source of wall-clock time, for tests of long absences. */
  readonly now?: () => number;
}

const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 10_000;
const DEFAULT_PROGRESS_INTERVAL_MS = 10_000;
const STOP_DRAIN_MS = 2_000;

/**
 * Applies the log to the store: reads batches from the offsets the store says it applied, writes each
 * batch and its end offsets in one store transaction, and tells the log once they are durable. What it
 * applied is published through two narrow views: `watermark` (how far, for reads) and `changes` (what, for
 * watches).
 *
 * It is caught up once it has applied everything the log held when it started (or when it last rebuilt).
 * While running it also records, every progress interval, the last time it was caught up: after a long
 * absence that time tells whether compaction may have removed deletes it never saw.
 */
export class Replica {
  readonly #log: Log;
  readonly #store: Store;
  readonly #logger: Logger;
  readonly #onCaughtUpChange: (caughtUp: boolean) => void;
  readonly #onFatal: (error: Kvs2Error) => void;
  readonly #now: () => number;
  readonly #progressIntervalMs: number | undefined;
  readonly #stop = new AbortController();
  readonly #watermark: ReplicaWatermark;
  readonly #changes: ChangeBroadcaster;
  readonly #progress: ReplicaProgress;
  #refreshingEnd: Promise<void> | undefined;
  #catchUpTarget: Offsets | undefined;
  #caughtUp = false;
  #whenCaughtUp: PromiseWithResolvers<void> = Promise.withResolvers();
  #loop: Promise<void> | undefined;
  /** True while the read loop runs (it ends for good on a fatal error). */
  #running = false;
  #progressTimer: NodeJS.Timeout | undefined;
  #skippedRecords = 0;
  #misplacedRecords = 0;
  #appliedRecords = 0;
  /** Bumped by every rebuild, so that a progress check begun before one does not write after it. */
  #generation = 0;

  /**
   * A store written before versions is upgraded here, before anything reads it (store-upgrade.ts): a node
   * builds its replica right after opening its store, before it listens.
   */
  constructor(options: ReplicaOptions) {
    upgradeUnversionedStore(options.store, options.log, options.logger);
    this.#log = options.log;
    this.#store = options.store;
    // Until start(): the log the store's offsets refer to.
    this.#watermark = new ReplicaWatermark(options.store.progress().logIdentity ?? '');
    this.#changes = new ChangeBroadcaster(() => this.#watermark.appliedOffsets, options.logger);
    this.#logger = options.logger;
    this.#onCaughtUpChange = options.onCaughtUpChange ?? (() => {});
    this.#onFatal = options.onFatal;
    this.#now = options.now ?? Date.now;
    this.#progressIntervalMs = options.progressIntervalMs;
    this.#progress = new ReplicaProgress({
      watermark: this.#watermark,
      endOffsets: (signal) => this.#log.endOffsets(signal),
      caughtUpAt: options.store.progress().caughtUpAt,
      now: this.#now,
      ...(options.endRefreshMs === undefined ? {} : { refreshMs: options.endRefreshMs }),
    });
  }

  /** How far the store has applied the log, for reads and for waiting on writes (read-your-writes). */
  get watermark(): AppliedWatermark {
    return this.#watermark;
  }

  /** Calls the listener whenever the watermark starts over from a store's offsets (see ReplicaWatermark). */
  onRestart(listener: () => void): () => void {
    return this.#watermark.onRestart(listener);
  }

  /** The changes as they are applied, for watches. */
  get changes(): ChangeFeed {
    return this.#changes;
  }

  /** How far behind the log's end the replica is, per partition. */
  get progress(): ReplicaProgressView & ReplicaProgressUpdates {
    return this.#progress;
  }

  /** Resolves once the replica has applied everything the log held when it started. */
  whenCaughtUp(): Promise<void> {
    return this.#whenCaughtUp.promise;
  }

  /**
   * Decides where to resume in the log `log.open()` just opened (and returned the identity of), then
   * applies it in the background until stop(). May be called again after it failed.
   */
  async start(logIdentity: string): Promise<void> {
    const plan = planResume(
      this.#store.progress(),
      {
        description: this.#log.description,
        identity: logIdentity,
        retainsHistory: this.#log.retainsHistory,
        tombstoneRetentionMs: this.#log.tombstoneRetentionMs,
        startOffsets: await this.#log.startOffsets(this.#stop.signal),
      },
      this.#now(),
    );
    if (plan.kind === 'refuse') {
      throw new Kvs2Error('INCONSISTENT_STATE', `${this.#store.description} cannot be used: ${plan.reason}`);
    }
    if (plan.kind === 'rebuild') {
      this.#logger.warn({ reason: plan.reason }, `rebuilding the store from the start of the log: ${plan.reason}`);
      await this.#store.clear();
    }
    await this.#beginReading(logIdentity);
    this.#loop = this.#run(this.#stop.signal);
    this.#refreshingEnd = this.#progress.run(this.#stop.signal);
    const retention = this.#log.tombstoneRetentionMs;
    // Well inside the tombstone retention, so that the recorded catch-up time is never stale by much.
    const intervalMs =
      this.#progressIntervalMs ??
      (retention === null
        ? DEFAULT_PROGRESS_INTERVAL_MS
        : Math.max(100, Math.min(DEFAULT_PROGRESS_INTERVAL_MS, retention / 10)));
    this.#progressTimer = setInterval(() => void this.#recordProgress(), intervalMs);
    this.#progressTimer.unref();
  }

  /**
   * Stops reading. A running replica first applies what the log held when stop() was called (for at most
   * STOP_DRAIN_MS), so that a node stopped gracefully right after a write replays nothing when it restarts;
   * the batch being applied always finishes.
   */
  async stop(): Promise<void> {
    clearInterval(this.#progressTimer);
    if (this.#loop !== undefined && this.#running && !this.#stop.signal.aborted) {
      const bound = AbortSignal.any([this.#stop.signal, AbortSignal.timeout(STOP_DRAIN_MS)]);
      try {
        await this.#watermark.waitFor(await this.#log.endOffsets(bound), bound);
      } catch {
        // The bound passed, or the log cannot say: stop where the replica is.
      }
    }
    this.#stop.abort();
    await this.#loop;
    await this.#refreshingEnd;
  }

  /** Takes the store's applied offsets as the place to read from, and the log's end as the catch-up target. */
  async #beginReading(logIdentity: string): Promise<void> {
    const progress = this.#store.progress();
    this.#store.advanceReads();
    this.#watermark.restart(progress.appliedOffsets, logIdentity);
    if (progress.logIdentity === null && progress.caughtUpAt === null) {
      // An empty store misses nothing that is written from now on: its bootstrap starts the clock.
      await this.#store.markCaughtUp(this.#now());
    }
    const askedAt = this.#now();
    this.#catchUpTarget = await this.#log.endOffsets(this.#stop.signal);
    this.#progress.catchingUp(this.#catchUpTarget, askedAt);
    this.#logger.info(
      {
        appliedOffsets: offsetsForLog(this.#watermark.appliedOffsets),
        endOffsets: offsetsForLog(this.#catchUpTarget),
        lag: offsetsForLog(lagBehind(this.#watermark.appliedOffsets, this.#catchUpTarget)),
      },
      'replica starting',
    );
    this.#checkCaughtUp();
  }

  async #run(signal: AbortSignal): Promise<void> {
    this.#running = true;
    try {
      await this.#readAndApply(signal);
    } finally {
      this.#running = false;
    }
  }

  async #readAndApply(signal: AbortSignal): Promise<void> {
    let retryMs = RETRY_MIN_MS;
    while (!signal.aborted) {
      try {
        for await (const batch of this.#log.read(this.#watermark.appliedOffsets, signal)) {
          await this.#apply(batch);
          retryMs = RETRY_MIN_MS;
        }
      } catch (error) {
        if (signal.aborted) break;
        if (!(await this.#recover(error))) return;
        // Whatever went wrong, never spin: the wait doubles until a batch applies again.
        await sleep(retryMs, undefined, { signal }).catch(() => {});
        retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
      }
    }
  }

  /** Handles a failure of the read loop; false when the replica must stop for good. */
  async #recover(error: unknown): Promise<boolean> {
    const code = isKvs2Error(error) ? error.code : undefined;
    const needsRebuild = code === 'LOG_RECREATED' || code === 'LOG_POSITION_LOST';
    if (needsRebuild && this.#log.retainsHistory) {
      try {
        await this.#rebuild(error as Kvs2Error);
      } catch (rebuildError) {
        this.#logger.error({ err: rebuildError }, `rebuild failed, retrying: ${describeError(rebuildError)}`);
      }
      return true;
    }
    if (needsRebuild || code === 'INCONSISTENT_STATE') {
      this.#logger.fatal({ err: error }, `replica stopped: ${describeError(error)}`);
      this.#onFatal(error as Kvs2Error);
      return false;
    }
    this.#logger.error({ err: error }, `replica failed, retrying: ${describeError(error)}`);
    return true;
  }

  /** The log changed under the replica in a way only a fresh start can follow. */
  async #rebuild(cause: Kvs2Error): Promise<void> {
    this.#logger.warn(
      { reason: cause.message, code: cause.code },
      `rebuilding the store from the start of the log: ${cause.message}`,
    );
    this.#setCaughtUp(false);
    this.#generation++;
    // Offsets waited for refer to the old log; they mean nothing in the new one.
    this.#watermark.abandonWaiters(cause.message);
    this.#changes.emit({ kind: 'reset', reason: cause.message });
    const identity = await this.#log.reopen(this.#stop.signal);
    await this.#store.clear();
    await this.#beginReading(identity);
  }

  async #apply(batch: LogBatch): Promise<void> {
    const writes: StoreWrite[] = [];
    for (const record of batch.records) {
      if (!isStorable(record)) {
        this.#skip(record.partition, record.offset, record.key);
        continue;
      }
      // ~20 ns a record (murmur2 of the key): nothing beside the store's write.
      if (this.#log.partitionOf(record.key) !== record.partition)
        this.#misplaced(record.partition, record.offset, record.key);
      writes.push({ key: record.key, value: record.value, version: record.offset + 1 });
    }
    const applied = await this.#store.apply(writes, batch.nextOffsets, this.#watermark.logIdentity);
    // Reads see the batch from here on, exactly when the watermark (every read's token) names it.
    this.#store.advanceReads();
    this.#watermark.advance(batch.nextOffsets);
    this.#appliedRecords += writes.length;
    this.#checkCaughtUp();
    // Whether anyone listens is asked only now, after the commit: a watch that subscribed while it ran got
    // the offsets before this batch as its start, so it must hear this batch. (Asked before the commit, such
    // a watch missed the batch for good.) Without listeners the feed costs the replica nothing.
    if (this.#changes.hasListeners) {
      const accepted = writes.length === batch.records.length ? batch.records : batch.records.filter(isStorable);
      this.#changes.emit({ kind: 'applied', records: accepted, nextOffsets: batch.nextOffsets });
    }
    const released = new Map(batch.nextOffsets);
    applied.flushed.then(
      () => this.#log.releaseBefore(released),
      (error: unknown) => this.#logger.error({ err: error }, 'store flush failed'),
    );
  }

  #skip(partition: number, offset: number, key: Buffer | null): void {
    this.#skippedRecords++;
    const reason = key === null ? 'no key' : key.length === 0 ? 'empty key' : `key of ${key.length} bytes`;
    this.#logger.warn(
      { partition, offset, skippedRecords: this.#skippedRecords },
      `skipped a log record the store cannot take (${reason})`,
    );
  }

  /**
   * A record in a partition other than the one this node's partitioner gives its key: another producer
   * partitions keys otherwise (not murmur2 of the whole key as Kafka's own producers do, or not by
   * --kafka-partitioner hash-tags as this node does), or the topic's partition count changed. The key may
   * then live in two partitions, which nodes apply in no common order: they can end with different values for
   * it, and a conditional write on it is decided against one partition only. Applied all the same (the log is
   * the truth), and told: the first, then one in 10,000.
   */
  #misplaced(partition: number, offset: number, key: Buffer): void {
    this.#misplacedRecords++;
    if (this.#misplacedRecords % 10_000 !== 1) return;
    this.#logger.warn(
      { partition, offset, keyPartition: this.#log.partitionOf(key), misplacedRecords: this.#misplacedRecords },
      `a log record is in partition ${partition}, but its key belongs to partition ${this.#log.partitionOf(key)}: ` +
        'another producer partitions keys otherwise (kvs2 uses murmur2 of the key, or of its {tag} with ' +
        '--kafka-partitioner hash-tags), or the partition count changed; a key in two partitions can end with ' +
        'a different value on each node',
    );
  }

  #checkCaughtUp(): void {
    if (this.#caughtUp || this.#catchUpTarget === undefined) return;
    if (!hasReached(this.#watermark.appliedOffsets, this.#catchUpTarget)) return;
    this.#logger.info(
      { appliedOffsets: offsetsForLog(this.#watermark.appliedOffsets), appliedRecords: this.#appliedRecords },
      'replica caught up with the log',
    );
    this.#progress.caughtUp();
    this.#setCaughtUp(true);
    this.#whenCaughtUp.resolve();
  }

  #setCaughtUp(caughtUp: boolean): void {
    if (this.#caughtUp === caughtUp) return;
    this.#caughtUp = caughtUp;
    this.#onCaughtUpChange(caughtUp);
  }

  /**
   * Compares the applied offsets with the log's end. Behind: says by how much. Caught up: records the
   * time the end offsets were asked for, since everything written before then has been applied.
   */
  async #recordProgress(): Promise<void> {
    if (!this.#caughtUp) {
      if (this.#catchUpTarget !== undefined) {
        this.#logger.info(
          {
            lag: offsetsForLog(lagBehind(this.#watermark.appliedOffsets, this.#catchUpTarget)),
            appliedRecords: this.#appliedRecords,
          },
          'replica catching up',
        );
      }
      return;
    }
    const askedAt = this.#now();
    const generation = this.#generation;
    try {
      const end = await this.#log.endOffsets(this.#stop.signal);
      if (generation !== this.#generation || !this.#caughtUp) return;
      const lag = lagBehind(this.#watermark.appliedOffsets, end);
      if (lag.size === 0) {
        await this.#store.markCaughtUp(askedAt);
      } else {
        this.#logger.debug({ lag: offsetsForLog(lag) }, 'replica lag');
      }
    } catch (error) {
      if (!this.#stop.signal.aborted) {
        this.#logger.warn({ err: error }, `could not compare with the log's end: ${describeError(error)}`);
      }
    }
  }
}

/** Whether the store can take this record: a key of 1 to STORE_MAX_KEY_BYTES bytes. */
function isStorable(record: LogRecord): record is LogRecord & { readonly key: Buffer } {
  const { key } = record;
  return key !== null && key.length > 0 && key.length <= STORE_MAX_KEY_BYTES;
}
