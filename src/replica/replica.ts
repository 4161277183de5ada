import { setTimeout as sleep } from 'node:timers/promises';
import { STORE_MAX_KEY_BYTES } from '../config/limits.js';
import { describeError, isKvs2Error, Kvs2Error } from '../errors.js';
import type { Log, LogBatch, Offsets } from '../log/log.js';
import { hasReached, lagBehind, offsetsForLog } from '../log/offsets.js';
import type { Logger } from '../logger.js';
import type { Store, StoreWrite } from '../store/store.js';

export interface ReplicaOptions {
  readonly log: Log;
  /** The identity `log.open()` returned. */
  readonly logIdentity: string;
  readonly store: Store;
  readonly logger: Logger;
  /** Called once if the replica meets a state it cannot repair (the node should stop). */
  readonly onFatal: (error: Kvs2Error) => void;
}

const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 10_000;

/**
 * Applies the log to the store: reads batches from the offsets the store says it applied, writes each
 * batch and its end offsets in one store transaction, and tells the log once they are durable.
 * It is caught up once it has applied everything the log held when the replica started.
 */
export class Replica {
  readonly #log: Log;
  readonly #identity: string;
  readonly #store: Store;
  readonly #logger: Logger;
  readonly #onFatal: (error: Kvs2Error) => void;
  readonly #stop = new AbortController();
  #applied: Map<number, number> = new Map();
  #catchUpTarget: Offsets | undefined;
  #caughtUp = false;
  #whenCaughtUp: PromiseWithResolvers<void> = Promise.withResolvers();
  #loop: Promise<void> | undefined;
  #skippedRecords = 0;
  #appliedRecords = 0;

  constructor(options: ReplicaOptions) {
    this.#log = options.log;
    this.#identity = options.logIdentity;
    this.#store = options.store;
    this.#logger = options.logger;
    this.#onFatal = options.onFatal;
  }

  /** Offsets applied so far, per partition (next offset to apply). */
  get appliedOffsets(): Offsets {
    return this.#applied;
  }

  get isCaughtUp(): boolean {
    return this.#caughtUp;
  }

  /** Records skipped because the store cannot take them (no key, key too long). */
  get skippedRecords(): number {
    return this.#skippedRecords;
  }

  /** Resolves once the replica has applied everything the log held when it started. */
  whenCaughtUp(): Promise<void> {
    return this.#whenCaughtUp.promise;
  }

  /** Decides where to resume, then applies the log in the background until stop(). */
  async start(): Promise<void> {
    await this.#resolveResumePoint();
    this.#catchUpTarget = await this.#log.endOffsets(this.#stop.signal);
    this.#logger.info(
      {
        appliedOffsets: offsetsForLog(this.#applied),
        endOffsets: offsetsForLog(this.#catchUpTarget),
        lag: offsetsForLog(lagBehind(this.#applied, this.#catchUpTarget)),
      },
      'replica starting',
    );
    this.#checkCaughtUp();
    this.#loop = this.#run(this.#stop.signal);
  }

  /** Stops reading; the batch being applied finishes first. */
  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
  }

  async #resolveResumePoint(): Promise<void> {
    const progress = this.#store.progress();
    if (progress.logIdentity !== null && progress.logIdentity !== this.#identity) {
      if (!this.#log.retainsHistory) {
        throw new Kvs2Error(
          'INCONSISTENT_STATE',
          `${this.#store.description} was built from log ${progress.logIdentity}, but ${this.#log.description} ` +
            `is log ${this.#identity}; refusing to mix them (move one of them away)`,
        );
      }
      this.#logger.warn(
        { storedIdentity: progress.logIdentity, logIdentity: this.#identity },
        'the log was recreated since this store was built: rebuilding the store from the start of the log',
      );
      await this.#store.clear();
    }
    this.#applied = new Map(this.#store.progress().appliedOffsets);
  }

  async #run(signal: AbortSignal): Promise<void> {
    let retryMs = RETRY_MIN_MS;
    while (!signal.aborted) {
      try {
        for await (const batch of this.#log.read(this.#applied, signal)) {
          await this.#apply(batch);
          retryMs = RETRY_MIN_MS;
        }
      } catch (error) {
        if (signal.aborted) break;
        if (isKvs2Error(error) && error.code === 'INCONSISTENT_STATE') {
          this.#logger.fatal({ err: error }, 'replica stopped: the store and the log disagree');
          this.#onFatal(error);
          return;
        }
        this.#logger.error({ err: error, retryInMs: retryMs }, `replica failed, retrying: ${describeError(error)}`);
        await sleep(retryMs, undefined, { signal }).catch(() => {});
        retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
      }
    }
  }

  async #apply(batch: LogBatch): Promise<void> {
    const writes: StoreWrite[] = [];
    for (const record of batch.records) {
      const { key, value } = record;
      if (key === null || key.length === 0 || key.length > STORE_MAX_KEY_BYTES) {
        this.#skip(record.partition, record.offset, key);
        continue;
      }
      writes.push({ key, value });
    }
    const applied = await this.#store.apply(writes, batch.nextOffsets, this.#identity);
    for (const [partition, offset] of batch.nextOffsets) this.#applied.set(partition, offset);
    this.#appliedRecords += writes.length;
    this.#checkCaughtUp();
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

  #checkCaughtUp(): void {
    if (this.#caughtUp || this.#catchUpTarget === undefined) return;
    if (!hasReached(this.#applied, this.#catchUpTarget)) return;
    this.#caughtUp = true;
    this.#logger.info(
      { appliedOffsets: offsetsForLog(this.#applied), appliedRecords: this.#appliedRecords },
      'replica caught up with the log',
    );
    this.#store.markCaughtUp(Date.now()).catch((error: unknown) => {
      this.#logger.error({ err: error }, 'could not record the catch-up time');
    });
    this.#whenCaughtUp.resolve();
  }
}
