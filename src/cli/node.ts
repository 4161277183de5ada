import { join } from 'node:path';
import { backoffMs, pause } from '../abort.js';
import { GrpcApi } from '../api/grpc-server.js';
import type { Config } from '../config/config.js';
import { describeError, isKvs2Error, Kvs2Error } from '../errors.js';
import { EmbeddedLog } from '../log/embedded/embedded-log.js';
import type { Log } from '../log/log.js';
import type { Logger } from '../logger.js';
import { Replica } from '../replica/replica.js';
import { KvService } from '../service/kv-service.js';
import { LmdbStore } from '../store/lmdb-store.js';
import type { Store } from '../store/store.js';
import { MemoryRelease } from './memory-release.js';

/** Pauses between attempts to open the log at start-up, as the replica's own retries. */
const START_RETRY_MIN_MS = 100;
const START_RETRY_MAX_MS = 10_000;

export interface NodeOptions {
  readonly config: Config;
  readonly logger: Logger;
  /** Called once if the node meets an error it cannot recover from; the owner should close it. */
  readonly onFatal: (error: Kvs2Error) => void;
}

/**
 * One kvs2 node: store, log, replica, service and gRPC API, built in that order and closed in reverse.
 * The node owns every resource it opens.
 */
export class KvsNode {
  readonly port: number;
  readonly #logger: Logger;
  readonly #shutdownTimeoutMs: number;
  readonly #store: Store;
  readonly #log: Log;
  readonly #service: KvService;
  readonly #api: GrpcApi;
  readonly #replica: Replica;
  readonly #memory: MemoryRelease;
  /** Aborted by close(): ends the start-up below if it is still waiting for the log. */
  readonly #stopStarting = new AbortController();
  /** Opens the log and starts the replica, retrying while the log is unavailable (health NOT_SERVING). */
  readonly #starting: Promise<void>;
  #started = false;
  #closing: Promise<void> | undefined;

  private constructor(parts: {
    port: number;
    logger: Logger;
    shutdownTimeoutMs: number;
    store: Store;
    log: Log;
    service: KvService;
    api: GrpcApi;
    replica: Replica;
    memory: MemoryRelease;
    onFatal: (error: Kvs2Error) => void;
  }) {
    this.port = parts.port;
    this.#logger = parts.logger;
    this.#shutdownTimeoutMs = parts.shutdownTimeoutMs;
    this.#store = parts.store;
    this.#log = parts.log;
    this.#service = parts.service;
    this.#api = parts.api;
    this.#replica = parts.replica;
    this.#memory = parts.memory;
    this.#starting = this.#startReplica(parts.onFatal);
  }

  /**
   * Waits for the log as a running node rides out an outage: a node started while brokers are down
   * listens (NOT_SERVING) and starts once they answer. Errors retrying cannot fix stop the node.
   */
  async #startReplica(onFatal: (error: Kvs2Error) => void): Promise<void> {
    const signal = this.#stopStarting.signal;
    let identity: string | undefined;
    for (let attempt = 0; !signal.aborted; attempt++) {
      try {
        // After a failed start, reopen() adopts the log as it is now (a topic recreated meanwhile).
        identity = identity === undefined ? await this.#log.open(signal) : await this.#log.reopen(signal);
        await this.#replica.start(identity);
        this.#started = true;
        return;
      } catch (error) {
        if (signal.aborted) return;
        if (!isKvs2Error(error) || (error.code !== 'LOG_UNAVAILABLE' && error.code !== 'LOG_RECREATED')) {
          this.#logger.fatal({ err: error }, `kvs2 cannot start: ${describeError(error)}`);
          onFatal(isKvs2Error(error) ? error : new Kvs2Error('INCONSISTENT_STATE', describeError(error)));
          return;
        }
        const waitMs = backoffMs(attempt, START_RETRY_MIN_MS, START_RETRY_MAX_MS);
        this.#logger.warn({ err: error, waitMs }, `waiting for the log, retrying in ${waitMs} ms: ${error.message}`);
        await pause(waitMs, signal);
      }
    }
  }

  static async start({ config, logger, onFatal }: NodeOptions): Promise<KvsNode> {
    const opened: Array<() => Promise<unknown>> = [];
    const memory = new MemoryRelease({ logger });
    opened.push(async () => memory.close());
    try {
      const store = LmdbStore.open(join(config.dataDir, 'store'));
      opened.push(() => store.close());
      const log = await createLog(config, logger);
      opened.push(() => log.close());
      let api: GrpcApi | undefined;
      let caughtUpBefore = false;
      const replica = new Replica({
        log,
        store,
        logger,
        onFatal,
        onCaughtUpChange: (caughtUp) => {
          // A bootstrap leaves the heap it grew behind; give it back before anyone is served.
          if (caughtUp && !caughtUpBefore) memory.releaseIfGrown('replica caught up');
          caughtUpBefore ||= caughtUp;
          api?.setServing(caughtUp);
        },
      });
      const service = new KvService({
        log,
        store,
        applied: replica.watermark,
        changes: { feed: replica.changes, history: log },
        limits: config.limits,
        maxReplyBytesInFlight: config.maxReplyBytesInFlight,
      });
      api = new GrpcApi({
        service,
        limits: config.limits,
        maxRequestBytes: config.maxRequestBytes,
        requestTimeoutMs: config.requestTimeoutMs,
      });
      const startedApi = api;
      opened.push(() => startedApi.shutdown(0));
      const port = await api.listen(config.listen.host, config.listen.port);
      logger.info(
        { address: `${config.listen.host}:${port}`, port, log: log.description, dataDir: config.dataDir },
        `kvs2 listening on ${config.listen.host}:${port}, ${log.description}, data in ${config.dataDir}`,
      );
      return new KvsNode({
        port,
        logger,
        shutdownTimeoutMs: config.shutdownTimeoutMs,
        store,
        log,
        service,
        api: startedApi,
        replica,
        memory,
        onFatal,
      });
    } catch (error) {
      for (const close of opened.reverse()) await close().catch(() => {});
      throw error;
    }
  }

  /**
   * Graceful shutdown: NOT_SERVING, stop accepting, let calls in flight finish (bounded), stop the
   * replica, flush and close the log, close the store. Safe to call more than once.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    const started = Date.now();
    this.#stopStarting.abort();
    // A start still waiting for the log ends at once (the replica's reads of the log abort).
    if (!this.#started) await this.#replica.stop();
    await this.#starting;
    this.#service.close();
    const graceful = await this.#api.shutdown(this.#shutdownTimeoutMs);
    if (!graceful) {
      this.#logger.warn(
        { graceMs: this.#shutdownTimeoutMs },
        'calls still in flight after the grace period were cancelled',
      );
    }
    await this.#replica.stop();
    await this.#log.close();
    await this.#store.close();
    this.#memory.close();
    this.#logger.info({ tookMs: Date.now() - started }, 'kvs2 stopped');
  }
}

async function createLog(config: Config, logger: Logger): Promise<Log> {
  if (config.kafka === null) return new EmbeddedLog({ dir: join(config.dataDir, 'log') });
  // Loaded only for Kafka: the client compiles its option validators when imported, which takes
  // ~0.4 s, more than half of an embedded node's start.
  const { KafkaLog } = await import('../log/kafka/kafka-log.js');
  const { brokers, topic, partitions, replicationFactor } = config.kafka;
  return new KafkaLog({
    brokers,
    topic,
    partitions,
    ...(replicationFactor === null ? {} : { replicationFactor }),
    maxKeyBytes: config.limits.maxKeyBytes,
    maxValueBytes: config.limits.maxValueBytes,
    logger,
  });
}
