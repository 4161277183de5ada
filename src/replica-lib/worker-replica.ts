import { Worker } from 'node:worker_threads';
import { pino } from 'pino';
import { LOG_LEVELS, type LogLevel } from '../config/config.js';
import { Kvs2Error } from '../errors.js';
import type { Logger } from '../logger.js';
import type { PartitionLag } from '../replica/replica-progress.js';
import { KvService } from '../service/kv-service.js';
import { RequestChecks } from '../service/request-checks.js';
import { storeDirOf } from '../snapshot/data-dir.js';
import { LmdbStore } from '../store/lmdb-store.js';
import { ForwardedLog } from '../threads/forwarded-log.js';
import { ReplicaMirror } from '../threads/replica-mirror.js';
import { ThreadLink } from '../threads/thread-link.js';
import { fromWireError, isMirrorMessage, type LogReply } from '../threads/thread-messages.js';
import { checkDataDir, FatalState, InProcessReplica } from './kvs2-replica.js';
import { LocalReads } from './local-reads.js';
import type { Kvs2Replica, ReplicaOptions } from './replica-api.js';
import { replicaConfig } from './replica-options.js';
import type { EndEntries, FromReplicaWorker, ReplicaWorkerData, ToReplicaWorker } from './replica-worker-messages.js';

const WORKER_ENTRY = new URL('./replica-worker.js', import.meta.url);

/** The worker thread's name (`/proc/<pid>/task/<tid>/comm`): what pins it to a core, or finds it in `top -H`. */
export const REPLICA_THREAD_NAME = 'kvs2-replica';

/** How long close() waits for the worker to exit by itself after it said it closed everything. */
const WORKER_EXIT_WAIT_MS = 5_000;

/**
 * openReplica with `applyOn: 'worker'` (index.ts, where it is documented): the Kafka client, the replica
 * and the store's writes on a worker thread of their own (replica-worker.ts); this thread opens the same
 * LMDB environment to read, and keeps the replica's watermark, change feed, caught-up state and progress
 * from the worker's messages (threads/replica-mirror.ts), in the order the worker committed. The same
 * InProcessReplica and KvService as `applyOn: 'caller'` serve the calls: only where the replica runs differs.
 */
export async function openWorkerReplica(options: ReplicaOptions): Promise<Kvs2Replica> {
  // Refusals of options happen here, before any thread starts, exactly as for the caller's thread.
  const config = replicaConfig(options);
  const logger = options.logger ?? pino({ level: 'silent' });
  await checkDataDir(config.dataDir);
  const data: ReplicaWorkerData = {
    options: {
      kafka: options.kafka,
      dataDir: options.dataDir,
      ...(options.bootstrapFrom === undefined ? {} : { bootstrapFrom: options.bootstrapFrom }),
      ...(options.maxValueBytes === undefined ? {} : { maxValueBytes: options.maxValueBytes }),
    },
    logLevel: options.logger === undefined ? 'silent' : levelOf(options.logger),
  };
  const fatal = new FatalState(options.onFatal);
  const thread = new ReplicaThread(new Worker(WORKER_ENTRY, { workerData: data, name: REPLICA_THREAD_NAME }), {
    logger,
    fatal,
  });
  const resources = new AsyncDisposableStack();
  resources.defer(() => thread.close());
  try {
    const identity = await thread.storeOpen;
    const store = resources.adopt(LmdbStore.openReader(storeDirOf(config.dataDir)), (s) => {
      // Messages that still arrive find no store to move reads in.
      thread.detachMirror();
      return s.close();
    });
    const mirror = new ReplicaMirror(store, identity, { live: true, state: 'serving' }, logger);
    thread.attachMirror(mirror);
    const log = new ForwardedLog(thread.link);
    const service = new KvService({
      log,
      conditional: log,
      store,
      applied: mirror.watermark,
      changes: { feed: mirror.changes, history: log },
      limits: config.limits,
      maxReplyBytesInFlight: config.maxReplyBytesInFlight,
    });
    resources.defer(() => service.close());
    return new InProcessReplica({
      store,
      service,
      logger,
      reads: new LocalReads(new RequestChecks(config.limits)),
      resources,
      state: {
        caughtUp: () => thread.caughtUp,
        whenCaughtUp: () => thread.whenCaughtUp,
        partitions: () => thread.partitions(mirror),
        started: () => thread.started,
        whenStarted: thread.whenStarted,
        failure: () => fatal.failure,
        failed: fatal.failed,
      },
    });
  } catch (error) {
    await resources.disposeAsync().catch(() => {});
    throw error;
  }
}

/** The application's thread's side of the replica's worker: its messages taken, its life followed. */
class ReplicaThread {
  readonly link: ThreadLink<ToReplicaWorker, LogReply>;
  /** Resolves with the log identity the store was last applied from once the worker has the store open. */
  readonly storeOpen: Promise<string>;
  readonly whenCaughtUp: Promise<void>;
  readonly whenStarted: Promise<void>;
  caughtUp = false;
  started = false;
  readonly #worker: Worker;
  readonly #logger: Logger;
  readonly #fatal: FatalState;
  readonly #settle: {
    readonly storeOpen: PromiseWithResolvers<string>;
    readonly caughtUp: PromiseWithResolvers<void>;
    readonly started: PromiseWithResolvers<void>;
  };
  readonly #exited = Promise.withResolvers<void>();
  #mirror: ReplicaMirror | null = null;
  #ends: EndEntries = [];
  #closing: Promise<void> | undefined;
  #openFailed = false;

  constructor(worker: Worker, options: { readonly logger: Logger; readonly fatal: FatalState }) {
    this.#worker = worker;
    this.#logger = options.logger;
    this.#fatal = options.fatal;
    this.link = new ThreadLink<ToReplicaWorker, LogReply>(worker);
    this.#settle = {
      storeOpen: Promise.withResolvers<string>(),
      caughtUp: Promise.withResolvers<void>(),
      started: Promise.withResolvers<void>(),
    };
    this.storeOpen = this.#settle.storeOpen.promise;
    // A failed open is reported through openReplica; never as an unhandled rejection.
    this.storeOpen.catch(() => {});
    this.whenCaughtUp = this.#settle.caughtUp.promise;
    this.whenStarted = this.#settle.started.promise;
    worker.on('message', (messages: FromReplicaWorker[]) => {
      for (const message of messages) this.#take(message);
    });
    worker.on('error', (error) => {
      this.#fail(
        new Kvs2Error(
          'INCONSISTENT_STATE',
          `the in-process replica's worker thread failed: ${error.message} (a bug in kvs2: please report it)`,
          { cause: error },
        ),
      );
    });
    worker.on('exit', (code) => {
      // A worker that could not open the store ends by itself: openReplica fails, nothing is fatal.
      if (this.#closing === undefined && !this.#openFailed) {
        this.#fail(new Kvs2Error('INCONSISTENT_STATE', `the in-process replica's worker thread exited (code ${code})`));
      }
      this.link.close(this.#fatal.failure ?? new Kvs2Error('SHUTTING_DOWN', 'the in-process replica is closed'));
      this.#settle.started.resolve();
      this.#exited.resolve();
    });
  }

  attachMirror(mirror: ReplicaMirror): void {
    this.#mirror = mirror;
  }

  detachMirror(): void {
    this.#mirror = null;
  }

  /** The topic's partitions: applied as reads see them here, ends as the worker last learnt them. */
  partitions(mirror: ReplicaMirror): PartitionLag[] {
    const reads = mirror.watermark.appliedOffsets;
    const ends = new Map(this.#ends);
    const numbers = new Set([...reads.keys(), ...ends.keys()]);
    return [...numbers]
      .sort((a, b) => a - b)
      .map((partition) => {
        const appliedOffset = reads.get(partition) ?? 0;
        const endOffset = ends.get(partition) ?? null;
        return {
          partition,
          appliedOffset,
          endOffset,
          lagRecords: endOffset === null ? null : Math.max(0, endOffset - appliedOffset),
        };
      });
  }

  /**
   * Asks the worker to stop the replica and close everything, and waits until the thread has exited (a
   * worker that does not exit in time is terminated). Nothing of the replica runs once this resolves.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.link.send({ type: 'close' });
      this.link.flush();
      const timer = setTimeout(() => {
        this.#logger.warn("the in-process replica's worker thread did not exit after closing: terminated");
        void this.#worker.terminate();
      }, WORKER_EXIT_WAIT_MS);
      await this.#exited.promise;
      clearTimeout(timer);
    })();
    return this.#closing;
  }

  #fail(error: Kvs2Error): void {
    this.#settle.storeOpen.reject(error);
    this.#fatal.onFatal(error);
  }

  #take(message: FromReplicaWorker): void {
    if (isMirrorMessage(message)) {
      this.#mirror?.take(message);
      return;
    }
    switch (message.type) {
      case 'log':
        this.#log(message.line);
        return;
      case 'store-open':
        this.#settle.storeOpen.resolve(message.identity);
        return;
      case 'open-failed':
        this.#openFailed = true;
        this.#settle.storeOpen.reject(fromWireError(message.error));
        return;
      case 'start-ended':
        this.started = message.started;
        this.#settle.started.resolve();
        return;
      case 'caught-up':
        // Sent before the batch that caught up is: reads must see that batch once this says so.
        this.#mirror?.refresh();
        this.caughtUp = message.now;
        if (message.now) this.#settle.caughtUp.resolve();
        return;
      case 'progress':
        this.#ends = message.ends;
        return;
      case 'fatal':
        this.#fatal.onFatal(fromWireError(message.error));
        return;
      case 'closed':
        return;
      default:
        this.link.deliver(message);
    }
  }

  /** One of the worker's pino lines, logged again by the application's logger at its level. */
  #log(line: string): void {
    let record: Record<string, unknown>;
    try {
      record = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    const { level, msg, time: _time, pid: _pid, hostname: _hostname, ...fields } = record;
    const label = typeof level === 'number' ? pino.levels.labels[level] : undefined;
    const method = (label ?? 'info') as Exclude<LogLevel, 'silent'>;
    this.#logger[method]({ ...fields, thread: REPLICA_THREAD_NAME }, typeof msg === 'string' ? msg : '');
  }
}

/** The application's logger's level, for the worker's own (a custom level: info). */
function levelOf(logger: Logger): LogLevel {
  const level = LOG_LEVELS.find((l) => l === logger.level);
  return level ?? 'info';
}
