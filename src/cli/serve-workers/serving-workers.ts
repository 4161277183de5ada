import { Worker } from 'node:worker_threads';
import type { Registry } from 'prom-client';
import type { Config } from '../../config/config.js';
import { Kvs2Error } from '../../errors.js';
import type { Log } from '../../log/log.js';
import type { Logger } from '../../logger.js';
import type { Replica } from '../../replica/replica.js';
import type { ConditionalWriter } from '../../service/conditional-writes.js';
import type { NodeHealth } from '../../service/node-health.js';
import type { NodeStatusReport } from '../../service/node-status.js';
import { LogRequests } from '../../threads/log-requests.js';
import { MessageBatches } from '../../threads/message-batches.js';
import { mirrorReplica } from '../../threads/mirror-source.js';
import { type HealthState, isLogRequest, toWireError, type WireError } from '../../threads/thread-messages.js';
import type { FromWorker, ToWorker, WorkerSettings } from './worker-messages.js';

export interface ServingWorkersOptions {
  readonly count: number;
  readonly config: Config;
  readonly storeDir: string;
  readonly log: Log;
  /** Decides the conditional writes the workers pass on. */
  readonly conditional: ConditionalWriter;
  readonly replica: Replica;
  readonly health: NodeHealth;
  readonly status: NodeStatusReport;
  /** The node's own registry, to which the workers' call metrics are added when scraped; null: no metrics. */
  readonly registry: Registry | null;
  readonly logger: Logger;
  /** A worker failed for good (it could not start, or stopped unexpectedly): the node should stop. */
  readonly onFatal: (error: Kvs2Error) => void;
}

const WORKER_ENTRY = new URL('./serving-worker.js', import.meta.url);

/** How long a worker that finished its shutdown gets to exit by itself before it is terminated. */
const WORKER_EXIT_WAIT_MS = 2_000;

/** How long a scrape waits for a worker's metrics before serving without them. */
const METRICS_WAIT_MS = 2_000;

/**
 * The node's serving workers (`--serve-workers N`): threads that each serve gRPC on the node's port, reading
 * the node's store. The node keeps the log, the replica and the store's one writer, and answers what the
 * workers ask of them (appends, the log's end, history for watches, status); it tells every worker each
 * commit (with its records, for watches), each restart of the replica and each change of health.
 */
export class ServingWorkers {
  readonly port: number;
  readonly #workers: WorkerChannel[];
  readonly #unsubscribe: Array<() => void>;
  readonly #registry: Registry | null;

  private constructor(
    port: number,
    workers: WorkerChannel[],
    unsubscribe: Array<() => void>,
    registry: Registry | null,
  ) {
    this.port = port;
    this.#workers = workers;
    this.#unsubscribe = unsubscribe;
    this.#registry = registry;
  }

  /**
   * Starts the workers one after the other (the first binds the port, possibly port 0; the others bind
   * the port it got), and resolves once all listen.
   */
  static async start(options: ServingWorkersOptions): Promise<ServingWorkers> {
    const { replica, health } = options;
    const workers: WorkerChannel[] = [];
    const broadcast = (message: ToWorker): void => {
      for (const worker of workers) worker.post(message);
    };
    // Subscribed before any worker reads the replica's state, so that no change falls in between.
    const unsubscribe = [
      mirrorReplica(replica, broadcast),
      health.onChange(() => broadcast({ type: 'health', health: healthState(health) })),
    ];
    let port = options.config.listen.port;
    try {
      for (let index = 0; index < options.count; index++) {
        const worker = new WorkerChannel(index, settingsOf(options, index, port), options);
        workers.push(worker);
        port = await worker.listening;
      }
    } catch (error) {
      for (const stop of unsubscribe) stop();
      await Promise.all(workers.map((worker) => worker.stop(0)));
      throw error;
    }
    return new ServingWorkers(port, workers, unsubscribe, options.registry);
  }

  /**
   * SIGHUP: every worker re-reads the TLS files or the auth file (the node has read them first). Resolves
   * once all have; rejects if one could not (the file changed again in between), naming it.
   */
  async reload(what: 'tls' | 'auth'): Promise<void> {
    await Promise.all(this.#workers.map((worker) => worker.reload(what)));
  }

  /**
   * The node's metrics with every worker's call metrics added, as Prometheus text. prom-client is loaded
   * here, on the first scrape: a node without /metrics never asks, and never loads it.
   */
  async metricsText(): Promise<string> {
    const { AggregatorRegistry } = await import('prom-client');
    const own = this.#registry === null ? [] : await this.#registry.getMetricsAsJSON();
    const theirs = await Promise.all(this.#workers.map((worker) => worker.metrics()));
    return AggregatorRegistry.aggregate([own, ...theirs]).metrics();
  }

  /**
   * Stops every worker: each stops taking calls and waits up to `graceMs` for its calls in flight. Resolves
   * with whether all finished within the grace period.
   */
  async shutdown(graceMs: number): Promise<boolean> {
    const graceful = await Promise.all(this.#workers.map((worker) => worker.stop(graceMs)));
    for (const stop of this.#unsubscribe) stop();
    return graceful.every(Boolean);
  }
}

function healthState(health: NodeHealth): HealthState {
  return { live: health.live(), state: health.state() };
}

function settingsOf(options: ServingWorkersOptions, index: number, port: number): WorkerSettings {
  const { config } = options;
  return {
    index,
    storeDir: options.storeDir,
    host: config.listen.host,
    port,
    limits: config.limits,
    maxRequestBytes: config.maxRequestBytes,
    // The budget is the node's: each worker holds its share.
    maxReplyBytesInFlight: Math.max(
      config.limits.maxReplyBytes,
      Math.floor(config.maxReplyBytesInFlight / options.count),
    ),
    requestTimeoutMs: config.requestTimeoutMs,
    snapshotSendStallTimeoutMs: config.snapshotSendStallTimeoutMs,
    tls: config.tls,
    authFile: config.authFile,
    logLevel: config.logLevel,
    metrics: options.registry !== null,
    identity: options.replica.watermark.logIdentity,
    health: healthState(options.health),
  };
}

/** One worker thread and the requests it has made of the node. */
class WorkerChannel {
  readonly listening: Promise<number>;
  readonly #index: number;
  readonly #worker: Worker;
  readonly #out: MessageBatches<ToWorker>;
  readonly #options: ServingWorkersOptions;
  /** What the worker asks of the log, in flight. */
  readonly #logRequests: LogRequests;
  readonly #metricsWaiting = new Map<number, (metrics: object[]) => void>();
  #nextMetricsId = 1;
  readonly #reloadsWaiting = new Map<number, (error: WireError | null) => void>();
  #nextReloadId = 1;
  #stopped: Promise<boolean> | null = null;
  #onShutdownDone: ((graceful: boolean) => void) | null = null;
  #exited = false;

  constructor(index: number, settings: WorkerSettings, options: ServingWorkersOptions) {
    this.#index = index;
    this.#options = options;
    this.#worker = new Worker(WORKER_ENTRY, { workerData: settings });
    this.#logRequests = new LogRequests({
      log: options.log,
      conditional: options.conditional,
      post: (reply) => this.post(reply),
    });
    this.#out = new MessageBatches((messages) => this.#worker.postMessage(messages));
    this.listening = new Promise<number>((resolve, reject) => {
      this.#worker.on('message', (messages: FromWorker[]) => {
        for (const message of messages) {
          if (message.type === 'listening') resolve(message.port);
          else if (message.type === 'fatal') {
            const error = new Kvs2Error(message.error.code, `serving worker ${index}: ${message.error.message}`);
            reject(error);
            if (this.#stopped === null) options.onFatal(error);
          } else this.#take(message);
        }
      });
      this.#worker.on('error', (error) => {
        const failure = new Kvs2Error(
          'INCONSISTENT_STATE',
          `serving worker ${index} failed: ${error.message} (a bug in kvs2: please report it)`,
          { cause: error },
        );
        reject(failure);
        if (this.#stopped === null) options.onFatal(failure);
      });
      this.#worker.on('exit', (code) => {
        this.#exited = true;
        this.#onShutdownDone?.(false);
        for (const settle of this.#reloadsWaiting.values()) settle(null);
        this.#reloadsWaiting.clear();
        this.#logRequests.abortAll();
        if (this.#stopped === null) {
          const failure = new Kvs2Error('INCONSISTENT_STATE', `serving worker ${index} exited (code ${code})`);
          reject(failure);
          options.onFatal(failure);
        }
      });
    });
    // A start that fails is reported through `listening` (and onFatal); never as an unhandled rejection.
    this.listening.catch(() => {});
  }

  post(message: ToWorker): void {
    if (!this.#exited) this.#out.queue(message);
  }

  metrics(): Promise<object[]> {
    if (this.#exited) return Promise.resolve([]);
    const id = this.#nextMetricsId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#metricsWaiting.delete(id);
        this.#options.logger.warn({ worker: this.#index }, 'a serving worker gave no metrics in time');
        resolve([]);
      }, METRICS_WAIT_MS);
      this.#metricsWaiting.set(id, (metrics) => {
        clearTimeout(timer);
        resolve(metrics);
      });
      this.post({ type: 'metrics-request', id });
    });
  }

  reload(what: 'tls' | 'auth'): Promise<void> {
    if (this.#exited) return Promise.resolve();
    const id = this.#nextReloadId++;
    return new Promise((resolve, reject) => {
      this.#reloadsWaiting.set(id, (error) => {
        if (error === null) resolve();
        else reject(new Kvs2Error(error.code, `serving worker ${this.#index}: ${error.message}`));
      });
      this.post({ type: 'reload', id, what });
    });
  }

  /** Asks the worker to shut down within `graceMs`; resolves with whether its calls all finished in time. */
  stop(graceMs: number): Promise<boolean> {
    this.#stopped ??= (async () => {
      if (this.#exited) return false;
      const done = new Promise<boolean>((resolve) => {
        this.#onShutdownDone = resolve;
      });
      this.post({ type: 'shutdown', graceMs });
      const graceful = await done;
      // The worker ends by itself once its connections have closed; terminating it at once could cut
      // the last frames it wrote.
      const exited = this.#exited
        ? Promise.resolve()
        : new Promise<void>((resolve) => this.#worker.once('exit', () => resolve()));
      const timer = setTimeout(() => void this.#worker.terminate(), WORKER_EXIT_WAIT_MS);
      await exited;
      clearTimeout(timer);
      return graceful;
    })();
    return this.#stopped;
  }

  #take(message: FromWorker): void {
    if (isLogRequest(message)) {
      this.#logRequests.take(message);
      return;
    }
    const { status } = this.#options;
    switch (message.type) {
      case 'status':
        try {
          this.post({ type: 'status', id: message.id, status: status.status() });
        } catch (error) {
          this.post({ type: 'failed', id: message.id, error: toWireError(error) });
        }
        return;
      case 'metrics':
        this.#metricsWaiting.get(message.id)?.(message.metrics as object[]);
        this.#metricsWaiting.delete(message.id);
        return;
      case 'shutdown-done':
        this.#onShutdownDone?.(message.graceful);
        return;
      case 'reloaded':
        this.#reloadsWaiting.get(message.id)?.(message.error);
        this.#reloadsWaiting.delete(message.id);
        return;
      default:
        return;
    }
  }
}
