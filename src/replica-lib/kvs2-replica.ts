import { pino } from 'pino';
import { abortError, Kvs2Error } from '../errors.js';
import type { Logger } from '../logger.js';
import type { PartitionLag } from '../replica/replica-progress.js';
import { KvService } from '../service/kv-service.js';
import { RequestChecks } from '../service/request-checks.js';
import type { CallContext, ReadOptions } from '../service/requests.js';
import type { WatchSession } from '../service/watch-session.js';
import { holdsData, refuseIfNodeRunning } from '../snapshot/data-dir.js';
import type { KeyValueReader, StoreStats } from '../store/store.js';
import { asBuffer, LocalReads, tokensOf } from './local-reads.js';
import type {
  ConsistencyToken,
  Kvs2Replica,
  ReplicaChange,
  ReplicaEntry,
  ReplicaOptions,
  ReplicaScanRange,
  ReplicaStatus,
  ReplicaWatchOptions,
} from './replica-api.js';
import { replicaConfig } from './replica-options.js';
import { openReplicaStack, startReplicaStack } from './replica-stack.js';

const EMPTY = Buffer.alloc(0);

/**
 * openReplica with `applyOn: 'caller'` (index.ts, where it is documented): the store, the Kafka log and the
 * replica on the application's own thread, assembled as src/cli/node.ts assembles them (replica-stack.ts),
 * with the node's KvService for reads that wait for tokens and for watches. Everything opened has one
 * owner, the stack that close() unwinds in reverse.
 */
export async function openInProcessReplica(options: ReplicaOptions): Promise<Kvs2Replica> {
  const config = replicaConfig(options);
  const logger = options.logger ?? pino({ level: 'silent' });
  await checkDataDir(config.dataDir);
  const fatal = new FatalState(options.onFatal);
  let caughtUp = false;
  const parts = await openReplicaStack(config, logger, {
    onFatal: fatal.onFatal,
    onCaughtUpChange: (now) => {
      caughtUp = now;
    },
  });
  const { log, store, replica, conditional, resources } = parts;
  try {
    const service = new KvService({
      log,
      conditional,
      store,
      applied: replica.watermark,
      changes: { feed: replica.changes, history: log },
      limits: config.limits,
      maxReplyBytesInFlight: config.maxReplyBytesInFlight,
    });
    // The library never writes; closing it refuses whatever would still ask the service to.
    resources.defer(() => service.close());
    const start = startReplicaStack(parts, logger, fatal.onFatal, () => fatal.failure !== null);
    return new InProcessReplica({
      store,
      service,
      logger,
      reads: new LocalReads(new RequestChecks(config.limits)),
      resources,
      state: {
        caughtUp: () => caughtUp,
        whenCaughtUp: () => replica.whenCaughtUp(),
        partitions: () => replica.progress.partitions(),
        started: start.started,
        whenStarted: start.whenStarted,
        failure: () => fatal.failure,
        failed: fatal.failed,
      },
    });
  } catch (error) {
    await resources.disposeAsync().catch(() => {});
    throw error;
  }
}

/**
 * What openReplica refuses before it opens anything, whichever thread applies: a node's embedded-log data
 * dir, and a data dir a running node holds.
 */
export async function checkDataDir(dataDir: string): Promise<void> {
  if (holdsData(dataDir).log) {
    throw new Kvs2Error(
      'INVALID_ARGUMENT',
      `openReplica: ${dataDir} holds an embedded log, a node's own: the in-process replica reads Kafka only and ` +
        'needs a data dir of its own',
    );
  }
  await refuseIfNodeRunning(dataDir, 'open an in-process replica');
}

/** The replica's failure for good: set once, reported once (to the option's onFatal), awaited by waits. */
export class FatalState {
  readonly failed: Promise<never>;
  #failure: Kvs2Error | null = null;
  readonly #reject: (error: Kvs2Error) => void;
  readonly #onFatal: ((error: Kvs2Error) => void) | undefined;

  constructor(onFatal: ((error: Kvs2Error) => void) | undefined) {
    const failed = Promise.withResolvers<never>();
    // Observed, so that a failure nobody waits for is no unhandled rejection.
    failed.promise.catch(() => {});
    this.failed = failed.promise;
    this.#reject = failed.reject;
    this.#onFatal = onFatal;
  }

  get failure(): Kvs2Error | null {
    return this.#failure;
  }

  readonly onFatal = (error: Kvs2Error): void => {
    if (this.#failure !== null) return;
    this.#failure = error;
    this.#reject(error);
    this.#onFatal?.(error);
  };
}

/** What an InProcessReplica reads and waits on, wherever its replica applies the topic. */
export interface ReplicaParts {
  /** The store reads look up (the writer's own, or a reader of the same environment beside a worker). */
  readonly store: KeyValueReader & { stats(): StoreStats };
  readonly service: KvService;
  readonly logger: Logger;
  readonly reads: LocalReads;
  readonly resources: AsyncDisposableStack;
  readonly state: {
    readonly caughtUp: () => boolean;
    /** Resolves once the replica has applied everything the topic held when it started (and reads see it). */
    readonly whenCaughtUp: () => Promise<void>;
    readonly partitions: () => readonly PartitionLag[];
    /** True once the topic is open and the replica reads it (tokens name positions in it only then). */
    readonly started: () => boolean;
    /** Resolves when the start-up loop ends: started, failed for good, or stopped. */
    readonly whenStarted: Promise<void>;
    readonly failure: () => Kvs2Error | null;
    readonly failed: Promise<never>;
  };
}

/**
 * A replica of a kvs2 topic inside this process: every key, kept up to date from Kafka as a node keeps its
 * own. Reads are lookups in the local LMDB store, synchronous and without an RPC; reads after a token wait
 * for the replica to apply it, as a node's Get with CONSISTENCY_AT_LEAST does (the same KvService). Writes are
 * not here: they go through Kvs2Client to a node, whose tokens the `...After` reads and watches honour.
 */
export class InProcessReplica implements Kvs2Replica {
  readonly #parts: ReplicaParts;
  readonly #closeSignal = new AbortController();
  readonly #watches = new Set<() => void>();
  #closing: Promise<void> | undefined;

  constructor(parts: ReplicaParts) {
    this.#parts = parts;
  }

  /**
   * Resolves once the replica has applied everything the topic held when it started (a node turns SERVING
   * then); at once if that already happened. Rejects if the replica fails for good, at close(), or when the
   * signal aborts (CANCELLED, or DEADLINE_EXCEEDED for `AbortSignal.timeout`).
   */
  async whenCaughtUp(signal?: AbortSignal): Promise<void> {
    this.#checkOpen();
    await this.#waiting(this.#parts.state.whenCaughtUp(), signal, 'waiting for the replica to catch up');
  }

  /** The value applied now, or undefined: a lookup in the local store. */
  get(key: Uint8Array): Buffer | undefined {
    this.#checkOpen();
    return this.#parts.reads.get(this.#parts.store, key);
  }

  /** Like get, with the key's version. */
  getEntry(key: Uint8Array): ReplicaEntry | undefined {
    this.#checkOpen();
    return this.#parts.reads.getEntry(this.#parts.store, key);
  }

  /** The values applied now, one per key in order (undefined where absent), read one after the other. */
  getMany(keys: readonly Uint8Array[]): Array<Buffer | undefined> {
    this.#checkOpen();
    return this.#parts.reads.getMany(this.#parts.store, keys);
  }

  /** Keys and values in byte order, as applied now, from one consistent LMDB snapshot; `limit`: most entries. */
  scan(range: ReplicaScanRange, limit?: number): ReplicaEntry[] {
    this.#checkOpen();
    return this.#parts.reads.scan(this.#parts.store, range, limit);
  }

  /**
   * The value once this replica has applied the writes the token(s) name: read-your-writes for a Set made
   * through any node of the topic. TOKEN_FROM_OTHER_LOG for a token of another topic (or a recreated one).
   */
  getAfter(
    key: Uint8Array,
    after: ConsistencyToken | readonly ConsistencyToken[],
    signal?: AbortSignal,
  ): Promise<Buffer | undefined> {
    const request = { key: asBuffer(key), ...this.#readAfter(after) };
    return this.#callAfterStart((context) => this.#parts.service.get(request, context), signal).then(
      (result) => result.value,
    );
  }

  /** Like getMany, once the replica has applied the writes the token(s) name. */
  getManyAfter(
    keys: readonly Uint8Array[],
    after: ConsistencyToken | readonly ConsistencyToken[],
    signal?: AbortSignal,
  ): Promise<ReadonlyArray<Buffer | undefined>> {
    const request = { keys: keys.map(asBuffer), ...this.#readAfter(after) };
    return this.#callAfterStart((context) => this.#parts.service.multiGet(request, context), signal).then(
      (result) => result.values,
    );
  }

  /**
   * Calls `listener` with every change to the key (or to keys with the prefix; an empty prefix: every key)
   * as the replica applies it, in topic order per partition; with `after`, first the changes since that
   * token, read back from the topic. The same watch as a node's Watch RPC. Returns the unsubscribe.
   */
  watch(
    filter: { readonly key: Uint8Array } | { readonly prefix: Uint8Array },
    listener: (change: ReplicaChange) => void,
    options: ReplicaWatchOptions = {},
  ): () => void {
    this.#checkOpen();
    const stop = new AbortController();
    const onError =
      options.onError ??
      ((error: Error) => this.#parts.logger.warn({ err: error }, `in-process watch ended: ${error.message}`));
    const request = {
      key: 'key' in filter ? asBuffer(filter.key) : EMPTY,
      prefix: 'prefix' in filter ? asBuffer(filter.prefix) : EMPTY,
      after: options.after === undefined ? EMPTY : asBuffer(options.after),
      progressIntervalMs: 0,
    };
    if ('key' in filter && request.key.length === 0) throw new Kvs2Error('INVALID_ARGUMENT', 'key is empty');
    const open = (): WatchSession => {
      // A session given a signal that already fired would never hear it: unsubscribed while the topic opened.
      if (stop.signal.aborted) throw abortError(stop.signal, 'watch');
      return this.#parts.service.watch(request, stop.signal);
    };
    // Once the topic is open, a bad token throws here; before, tokens cannot be checked yet and it goes to onError.
    let session: WatchSession | Promise<WatchSession> = this.#parts.state.started()
      ? open()
      : this.#whenStarted(stop.signal).then(open);
    const unsubscribe = (): void => {
      this.#watches.delete(unsubscribe);
      stop.abort();
    };
    this.#watches.add(unsubscribe);
    void (async () => {
      try {
        session = await session;
        for (;;) {
          const event = await session.next();
          if (event.kind === 'progress') continue;
          listener({
            kind: event.kind,
            key: event.key,
            value: event.kind === 'put' ? event.value : undefined,
            token: event.token,
            version: event.version,
          });
        }
      } catch (error) {
        if (stop.signal.aborted && !this.#closeSignal.signal.aborted) return;
        this.#watches.delete(unsubscribe);
        stop.abort();
        onError(this.#closeSignal.signal.aborted ? shuttingDown() : toError(error));
      } finally {
        if (!(session instanceof Promise)) session.close();
      }
    })();
    return unsubscribe;
  }

  /** A token for what this replica has applied now: a node (or another replica) given it reads no older state. */
  token(): Buffer {
    return this.#parts.service.appliedToken();
  }

  status(): ReplicaStatus {
    const { store, state } = this.#parts;
    return {
      caughtUp: state.caughtUp(),
      partitions: state.partitions().map((p) => ({
        partition: p.partition,
        appliedOffset: p.appliedOffset,
        endOffset: p.endOffset,
        lagRecords: p.lagRecords,
      })),
      keys: this.#closing === undefined ? store.stats().keys : 0,
      failure: state.failure(),
    };
  }

  /**
   * Stops the replica (it first applies, for up to 2 s, what the topic held when asked, so that a reopen
   * replays nothing), then closes the topic's clients and the store. Watches end with SHUTTING_DOWN, waiting
   * reads fail with it, later calls throw it. Safe to call more than once.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    // The reason is what every wait and watch cut short by it fails with.
    this.#closeSignal.abort(shuttingDown());
    for (const end of [...this.#watches]) end();
    await this.#parts.resources.disposeAsync();
  }

  #checkOpen(): void {
    if (this.#closing !== undefined) throw shuttingDown();
  }

  #readAfter(after: ConsistencyToken | readonly ConsistencyToken[]): ReadOptions {
    return { consistency: 'at-least', after: tokensOf(after) };
  }

  /**
   * A call that names positions in the topic: tokens are checked against the topic the replica reads, known
   * once it is open. Already open, the call begins at once, before anything else (a close()) can run.
   */
  #callAfterStart<T>(call: (context: CallContext) => T | Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.#parts.state.started()) return this.#call(call, signal);
    return this.#whenStarted(signal).then(() => this.#call(call, signal));
  }

  async #whenStarted(signal?: AbortSignal): Promise<void> {
    await this.#waiting(this.#parts.state.whenStarted, signal, 'waiting for the topic to open');
    if (!this.#parts.state.started()) throw this.#parts.state.failure() ?? shuttingDown();
  }

  /** One service call as a node's handler makes it: with the caller's signal, ended when it answers. */
  async #call<T>(call: (context: CallContext) => T | Promise<T>, signal?: AbortSignal): Promise<T> {
    this.#checkOpen();
    // A call whose deadline passed (or that was cancelled) before it began fails, as a node's does, even when
    // its tokens are applied already: the service only looks at the signal while it waits.
    if (signal?.aborted) throw abortError(signal, 'reading after a token');
    const ends: Array<() => void> = [];
    const callSignal =
      signal === undefined ? this.#closeSignal.signal : AbortSignal.any([signal, this.#closeSignal.signal]);
    try {
      const answer = Promise.resolve().then(() => call({ signal: callSignal, onEnd: (end) => ends.push(end) }));
      return await this.#waiting(answer);
    } finally {
      for (const end of ends) end();
    }
  }

  /** Races `promise` with the replica's failure, close() and the signal. */
  async #waiting<T>(promise: Promise<T>, signal?: AbortSignal, what = 'waiting for the replica'): Promise<T> {
    const { failed } = this.#parts.state;
    const stops = [this.#closeSignal.signal, ...(signal === undefined ? [] : [signal])];
    const stopped = new Promise<never>((_, reject) => {
      const onAbort = (): void => {
        const fired = stops.find((s) => s.aborted);
        if (fired !== undefined) reject(abortError(fired, what));
      };
      for (const s of stops) s.addEventListener('abort', onAbort, { once: true });
      onAbort();
      void promise
        .finally(() => {
          for (const s of stops) s.removeEventListener('abort', onAbort);
        })
        .catch(() => {});
    });
    stopped.catch(() => {});
    return Promise.race([promise, failed, stopped]);
  }
}

function shuttingDown(): Kvs2Error {
  return new Kvs2Error('SHUTTING_DOWN', 'the in-process replica is closed');
}

function toError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
