import type { Limits } from '../../src/config/config.js';
import type { Kvs2Error } from '../../src/errors.js';
import { createLogger } from '../../src/logger.js';
import { hasReached } from '../../src/offsets.js';
import { type AppliedWatermark, ReplicaWatermark } from '../../src/replica/applied-watermark.js';
import { ChangeBroadcaster, type ChangeFeed } from '../../src/replica/change-feed.js';
import { Replica } from '../../src/replica/replica.js';
import { ConditionalWrites } from '../../src/service/conditional-writes.js';
import { KvService, type LogAppender } from '../../src/service/kv-service.js';
import { LmdbStore } from '../../src/store/lmdb-store.js';
import type { StoreWrite } from '../../src/store/store.js';
import { MemoryLog } from './memory-log.js';
import { tempDir } from './paths.js';

const logger = createLogger('silent');

/** Small limits, so that every bound is cheap to reach in a test. */
export const TEST_LIMITS: Limits = {
  maxKeyBytes: 1024,
  maxValueBytes: 256 * 1024,
  maxBatchKeys: 500,
  maxReplyBytes: 4 * 1024 * 1024,
};

/** As --max-reply-bytes-in-flight's default. */
const DEFAULT_REPLY_BYTES_IN_FLIGHT = 256 * 1024 * 1024;

export interface ServiceNodeOptions {
  readonly limits?: Partial<Limits>;
  readonly maxReplyBytesInFlight?: number;
  readonly partitions?: number;
  /** What the service appends through (default: the MemoryLog itself); for faults of single appends. */
  readonly appender?: (log: MemoryLog) => LogAppender;
}

/** A KvService over a MemoryLog and an LmdbStore in a temporary folder, with whatever applies the log. */
export interface ServiceNode<R> {
  readonly log: MemoryLog;
  readonly store: LmdbStore;
  readonly replica: R;
  readonly service: KvService;
  readonly limits: Limits;
  /** Stops the replica, closes the log and the store, deletes the folder. */
  close(): Promise<void>;
}

/** Wired as src/cli/node.ts wires a node: a real Replica applies the log in the background. */
export async function startLiveNode(options: ServiceNodeOptions = {}): Promise<ServiceNode<Replica>> {
  return start(options, async (log, store, logIdentity) => {
    let fatal: Kvs2Error | undefined;
    const replica = new Replica({
      log,
      store,
      logger,
      onFatal: (error) => {
        fatal = error;
      },
    });
    await replica.start(logIdentity);
    await replica.whenCaughtUp();
    return {
      replica,
      watermark: replica.watermark,
      feed: replica.changes,
      stop: async () => {
        await replica.stop();
        // A test that made the replica give up would otherwise pass without noticing.
        if (fatal !== undefined) throw fatal;
      },
    };
  });
}

/**
 * A node whose replica has not begun reading (as one with an empty store is while it starts): the test
 * starts it with `node.replica.start(await node.log.open())`.
 */
export async function startNodeBeforeReplica(options: ServiceNodeOptions = {}): Promise<ServiceNode<Replica>> {
  return start(options, async (log, store) => {
    const replica = new Replica({ log, store, logger, onFatal: () => {} });
    return { replica, watermark: replica.watermark, feed: replica.changes, stop: () => replica.stop() };
  });
}

/** Like a live node, but the log is applied only when the test says so: the replica lags until then. */
export async function startSteppedNode(options: ServiceNodeOptions = {}): Promise<ServiceNode<SteppedReplica>> {
  return start(options, async (log, store, logIdentity) => {
    const replica = new SteppedReplica(log, store, logIdentity);
    return { replica, watermark: replica.watermark, feed: replica.changes, stop: async () => {} };
  });
}

/**
 * What the Replica does for one round, on demand: reads what the log holds, applies it to the store,
 * moves the watermark and announces the changes on the feed.
 */
export class SteppedReplica {
  readonly watermark: ReplicaWatermark;
  readonly changes: ChangeBroadcaster;
  readonly #log: MemoryLog;
  readonly #store: LmdbStore;

  constructor(log: MemoryLog, store: LmdbStore, logIdentity: string) {
    this.#log = log;
    this.#store = store;
    this.watermark = new ReplicaWatermark(logIdentity);
    this.changes = new ChangeBroadcaster(() => this.watermark.appliedOffsets, logger);
  }

  /** Applies everything the log holds now; resolves with how many records that was. */
  async applyAll(): Promise<number> {
    const end = await this.#log.endOffsets();
    let applied = 0;
    if (hasReached(this.watermark.appliedOffsets, end)) return applied;
    const stop = new AbortController();
    try {
      for await (const batch of this.#log.read(this.watermark.appliedOffsets, stop.signal)) {
        const writes: StoreWrite[] = [];
        for (const { key, value, offset } of batch.records) {
          if (key !== null) writes.push({ key, value, version: offset + 1 });
        }
        await this.#store.apply(writes, batch.nextOffsets, this.watermark.logIdentity);
        this.watermark.advance(batch.nextOffsets);
        this.changes.emit({ kind: 'applied', records: batch.records, nextOffsets: batch.nextOffsets });
        applied += batch.records.length;
        if (hasReached(this.watermark.appliedOffsets, end)) break;
      }
    } finally {
      stop.abort();
    }
    return applied;
  }
}

interface Applier<R> {
  readonly replica: R;
  readonly watermark: AppliedWatermark;
  readonly feed: ChangeFeed;
  readonly stop: () => Promise<void>;
}

async function start<R>(
  options: ServiceNodeOptions,
  applier: (log: MemoryLog, store: LmdbStore, logIdentity: string) => Promise<Applier<R>>,
): Promise<ServiceNode<R>> {
  const dir = await tempDir('service');
  const log = new MemoryLog({ partitions: options.partitions ?? 1 });
  const store = LmdbStore.open(dir.path);
  const limits: Limits = { ...TEST_LIMITS, ...options.limits };
  try {
    const { replica, watermark, feed, stop } = await applier(log, store, await log.open());
    const service = new KvService({
      log: options.appender?.(log) ?? log,
      conditional: new ConditionalWrites({ log, applied: watermark, feed, store }),
      store,
      applied: watermark,
      changes: { feed, history: log },
      limits,
      maxReplyBytesInFlight: options.maxReplyBytesInFlight ?? DEFAULT_REPLY_BYTES_IN_FLIGHT,
    });
    return {
      log,
      store,
      replica,
      service,
      limits,
      close: async () => {
        service.close();
        try {
          await stop();
        } finally {
          await log.close();
          await store.close();
          await dir.remove();
        }
      },
    };
  } catch (error) {
    await log.close();
    await store.close();
    await dir.remove();
    throw error;
  }
}
