import { join } from 'node:path';
import { GrpcApi } from '../api/grpc-server.js';
import { HealthService } from '../api/health.js';
import { plaintextExposureWarning, ServerTls } from '../api/server-tls.js';
import { Authorizer } from '../auth/authorizer.js';
import { AuthFileError } from '../auth/policy.js';
import type { Config } from '../config/config.js';
import { ConfigError } from '../config/config-error.js';
import { describeError, type Kvs2Error } from '../errors.js';
import { EmbeddedLog } from '../log/embedded/embedded-log.js';
import type { Log } from '../log/log.js';
import type { Logger } from '../logger.js';
import type { MetricsSource } from '../metrics/metrics-listener.js';
import type { NodeMetrics } from '../metrics/node-metrics.js';
import { compactIfItPays, readLogIntoStore } from '../replica/compacting-bootstrap.js';
import { beginBootstrapIfEmpty, holdsEmptyStore } from '../replica/peer-bootstrap.js';
import { Replica } from '../replica/replica.js';
import { startReplica } from '../replica/start-replica.js';
import { peerSnapshotStream } from '../replica-lib/peer-snapshots.js';
import { ConditionalWrites } from '../service/conditional-writes.js';
import { KvService } from '../service/kv-service.js';
import { HealthBeforeStart, NodeHealth } from '../service/node-health.js';
import { NodeStatusReport } from '../service/node-status.js';
import { removeLeftoverStaging } from '../snapshot/data-dir.js';
import { removeLeftoverImages } from '../snapshot/store-image.js';
import { LmdbStore } from '../store/lmdb-store.js';
import { KVS2_VERSION } from '../version.js';
import { MemoryRelease } from './memory-release.js';
import { nodeIdOf } from './node-id.js';
import { sendStallLogger } from './send-stall-log.js';
import type { ServingWorkers } from './serve-workers/serving-workers.js';

export interface NodeOptions {
  readonly config: Config;
  readonly logger: Logger;
  /** Called once if the node meets an error it cannot recover from; the owner should close it. */
  readonly onFatal: (error: Kvs2Error) => void;
}

/**
 * One kvs2 node: log, store, replica, service and gRPC API. Each part is registered on one stack beside the
 * line that opens it, so closing (the stack, in reverse) can never disagree with opening: the start-up
 * stops waiting, writes are refused, calls in flight drain, the replica stops, the store closes, the log
 * flushes and closes. The log comes first because a bootstrap from peers judges their snapshots against
 * it before the store is opened on one.
 */
export class KvsNode {
  readonly port: number;
  /** The port of the metrics listener; null without --metrics-listen. */
  readonly metricsPort: number | null;
  readonly #logger: Logger;
  readonly #resources: AsyncDisposableStack;
  readonly #tls: ServerTls | null;
  readonly #auth: Authorizer | null;
  readonly #workers: ServingWorkers | null;
  #closing: Promise<void> | undefined;

  private constructor(
    port: number,
    metricsPort: number | null,
    logger: Logger,
    resources: AsyncDisposableStack,
    tls: ServerTls | null,
    auth: Authorizer | null,
    workers: ServingWorkers | null,
  ) {
    this.port = port;
    this.metricsPort = metricsPort;
    this.#logger = logger;
    this.#resources = resources;
    this.#tls = tls;
    this.#auth = auth;
    this.#workers = workers;
  }

  static async start({ config, logger, onFatal }: NodeOptions): Promise<KvsNode> {
    const startedAtMs = Date.now();
    // First, before anything is opened: unreadable certificate files are a usage error (a ConfigError).
    const tls = config.tls === null ? null : ServerTls.load(config.tls);
    const stack = new AsyncDisposableStack();
    try {
      // Without --metrics-listen there is no registry at all, and the log and the API observe nothing.
      const metricsAt = config.metricsListen;
      // Loaded only then: prom-client and the OpenTelemetry API it imports are ~80 modules a node without
      // /metrics would hold in its heap for nothing.
      const metricsModules = metricsAt === null ? null : await loadMetricsModules();
      const metrics = metricsModules === null ? null : new metricsModules.NodeMetrics(KVS2_VERSION);
      // With serving workers, /metrics adds theirs to the node's (they exist only once they listen, below).
      let workers: ServingWorkers | null = null;
      const registry = metrics?.registry ?? null;
      const metricsSource: MetricsSource | null =
        registry === null
          ? null
          : {
              contentType: registry.contentType,
              metrics: () => (workers === null ? registry.metrics() : workers.metricsText()),
            };
      // Probes answer from the start: `starting` while the log opens and a bootstrap from a peer runs (before
      // the store opens), then the node's own health. Closed last, so that they answer "stopping" meanwhile.
      const healthBeforeStart = new HealthBeforeStart();
      const metricsListener =
        metricsSource === null || metricsAt === null || metricsModules === null
          ? null
          : stack.adopt(
              new metricsModules.MetricsListener({ registry: metricsSource, health: healthBeforeStart, ...metricsAt }),
              (l) => l.close(),
            );
      const metricsPort = (await metricsListener?.listen()) ?? null;
      if (metricsListener !== null) {
        logger.info(
          { metricsAddress: metricsListener.url, metricsPort },
          `metrics and probes on ${metricsListener.url}/metrics, /livez, /readyz`,
        );
      }
      // A bad auth file is a usage error too, before any data is opened.
      const auth =
        config.authFile === null ? null : stack.adopt(loadAuth(config.authFile, logger, metrics), (a) => a.close());
      const memory = stack.adopt(new MemoryRelease({ logger }), (m) => m.close());
      // Read now: an unreadable --bootstrap-token-file is a usage error, before anything connects.
      const peerSnapshots = config.bootstrap === null ? null : peerSnapshotStream(config.bootstrap, config.tls);
      const storeDir = join(config.dataDir, 'store');
      // Copies of the store that store images a crash interrupted left behind (snapshot/store-image.ts), and
      // stores a crash interrupted while they were being built (a peer's snapshot installing, a rewrite).
      await removeLeftoverImages(storeDir);
      const staging = await removeLeftoverStaging(config.dataDir);
      if (staging.length > 0) {
        logger.warn(
          { removed: staging },
          'removed what an install or rewrite cut short by a crash had left in the data dir',
        );
      }
      // Before a bootstrap from peers can fill it: whether this start reads the whole log into an empty store.
      const emptyAtStart = config.compactAfterBootstrap && (await holdsEmptyStore(config.dataDir));
      // Begun before the log is made, so that the peer copies and sends its store while this node loads the
      // Kafka client and opens the topic; the snapshot is judged against the log before it is installed.
      // Before the store opens: a peer's snapshot is installed as the store's whole file, which nothing may
      // have open (serving workers open it too). The node listens once it is in place. Nothing stops it but
      // the process's end (a signal during start-up exits at once; the next start clears up).
      // Ends a bootstrap still running if the start-up fails (the log cannot be made, say).
      const startup = new AbortController();
      stack.defer(() => startup.abort());
      const bootstrap =
        config.bootstrap === null || peerSnapshots === null
          ? null
          : await beginBootstrapIfEmpty({
              dataDir: config.dataDir,
              peers: config.bootstrap.peers,
              stream: peerSnapshots,
              logger,
              signal: startup.signal,
            });
      const log = stack.adopt(await createLog(config, logger, metrics), (l) => l.close());
      const fromPeer = (await bootstrap?.judgedAgainst(log)) ?? null;
      if (emptyAtStart) {
        // --compact-after-bootstrap: fill the store (a peer's snapshot, or the whole log read here) and
        // rewrite it in key order if that pays, before anything opens it to serve.
        const filled =
          fromPeer !== null ||
          (await readLogIntoStore({ dataDir: config.dataDir, log, logger, signal: startup.signal }));
        if (filled) {
          await compactIfItPays({
            dataDir: config.dataDir,
            logger,
            filledFrom: fromPeer === null ? 'the log' : `peer ${fromPeer.peer}`,
            // The rewrite allocates per key: on a heap full of the read's garbage it took 2.9 s, not 2.4 (1M keys).
            beforeRewrite: () => memory.releaseIfGrown('bootstrapped; rewriting the store'),
          });
        }
      }
      const store = stack.adopt(LmdbStore.open(storeDir), (s) => s.close());
      if (store.clearedUnfinishedLoad) {
        logger.warn(
          'the store held a snapshot load that never finished (the node died during it): cleared, starting over',
        );
      }
      let caughtUpBefore = false;
      const replica = stack.adopt(
        new Replica({
          log,
          store,
          logger,
          onFatal,
          onCaughtUpChange: (caughtUp) => {
            // A bootstrap leaves the heap it grew behind; give it back before anyone is served.
            if (caughtUp && !caughtUpBefore) memory.releaseIfGrown('replica caught up');
            caughtUpBefore ||= caughtUp;
            nodeHealth.caughtUp(caughtUp);
          },
        }),
        (r) => r.stop(),
      );
      const nodeHealth = new NodeHealth({ progress: replica.progress, maxReadyLag: config.maxReadyLag });
      const decider = new ConditionalWrites({ log, applied: replica.watermark, feed: replica.changes, store });
      const conditional = metrics === null ? decider : metrics.meterConditionalWrites(decider);
      const service = new KvService({
        log,
        conditional,
        store,
        applied: replica.watermark,
        changes: { feed: replica.changes, history: log },
        limits: config.limits,
        maxReplyBytesInFlight: config.maxReplyBytesInFlight,
      });
      const status = new NodeStatusReport({
        version: KVS2_VERSION,
        logKind: config.kafka === null ? 'embedded' : 'kafka',
        logDescription: log.description,
        startedAtMs,
        health: nodeHealth,
        progress: replica.progress,
        store,
        appliedToken: () => service.appliedToken(),
      });
      healthBeforeStart.follow(nodeHealth);
      const drainCalls = async (graceful: boolean): Promise<void> => {
        if (!graceful) {
          logger.warn(
            { graceMs: config.shutdownTimeoutMs },
            'calls still in flight after the grace period were cancelled',
          );
        }
      };
      const api =
        config.serveWorkers > 0
          ? null
          : stack.adopt(
              new GrpcApi({
                service,
                status,
                health: new HealthService(nodeHealth),
                limits: config.limits,
                maxRequestBytes: config.maxRequestBytes,
                requestTimeoutMs: config.requestTimeoutMs,
                sendStall: { limitMs: config.snapshotSendStallTimeoutMs, onStall: sendStallLogger(logger) },
                calls: metrics?.calls,
                tls,
                auth,
              }),
              async (a) => drainCalls(await a.shutdown(config.shutdownTimeoutMs)),
            );
      // Writes are refused before the calls in flight drain.
      stack.defer(() => service.close());
      metrics?.observe({
        health: nodeHealth,
        progress: replica.progress,
        store,
        openWatches: () => api?.openWatches ?? 0,
      });
      let port: number;
      if (api !== null) port = await api.listen(config.listen.host, config.listen.port);
      else {
        // Loaded only then: the workers' metrics aggregation imports prom-client, which a node that serves
        // on its own thread does not load unless /metrics is asked for.
        const { ServingWorkers } = await import('./serve-workers/serving-workers.js');
        const started = await ServingWorkers.start({
          conditional,
          count: config.serveWorkers,
          config,
          storeDir,
          log,
          replica,
          health: nodeHealth,
          status,
          registry,
          logger,
          onFatal,
        });
        workers = started;
        // Run before the main service closes (deferred earlier, so run later); each worker closes its own first.
        stack.defer(async () => drainCalls(await started.shutdown(config.shutdownTimeoutMs)));
        port = started.port;
      }
      nodeHealth.listening();
      // Before the line that announces the address, so that whoever reads that line has seen these.
      if (tls !== null) {
        logger.info(
          { tls: tls.mutual ? 'mutual' : 'server', ...config.tls },
          tls.mutual
            ? 'gRPC speaks TLS only; clients must present a certificate signed by --tls-client-ca'
            : 'gRPC speaks TLS only',
        );
      }
      if (auth !== null) {
        logger.info(
          { authFile: auth.file, ...auth.counts },
          `calls need a bearer token allowed by ${auth.file}; health and reflection stay open`,
        );
      }
      const exposure = plaintextExposureWarning(config.listen.host, port, tls !== null);
      if (exposure !== null) logger.warn({ address: `${config.listen.host}:${port}` }, exposure);
      logger.info(
        {
          address: `${config.listen.host}:${port}`,
          port,
          version: KVS2_VERSION,
          log: log.description,
          dataDir: config.dataDir,
          serveWorkers: config.serveWorkers,
        },
        `kvs2 listening on ${config.listen.host}:${port} (version ${KVS2_VERSION}), ${log.description}, data in ${config.dataDir}` +
          (config.serveWorkers > 0 ? `, served by ${config.serveWorkers} worker threads` : ''),
      );
      const stopStarting = new AbortController();
      const starting = startReplica(log, replica, logger, onFatal, stopStarting.signal);
      stack.defer(async () => {
        stopStarting.abort();
        // A replica still starting waits on the log with its own signal, which only stop() aborts.
        await replica.stop();
        await starting;
      });
      // First thing at shutdown: probes see NOT_SERVING while the replica drains and calls finish.
      stack.defer(() => nodeHealth.stopping());
      return new KvsNode(port, metricsPort, logger, stack.move(), tls, auth, workers);
    } catch (error) {
      await stack.disposeAsync().catch(() => {});
      throw error;
    }
  }

  /**
   * Re-reads the TLS certificate, key and client CA files (SIGHUP): new connections get them, open ones
   * keep theirs. If a file is unreadable or unusable the certificates in use stay, with a warning.
   */
  async reloadTls(): Promise<void> {
    if (this.#tls === null) {
      this.#logger.info('SIGHUP: no TLS certificates to reload (serving plaintext)');
      return;
    }
    try {
      this.#tls.reload();
      // Announced once every serving worker has them too: whoever reads the line may connect at once.
      await this.#workers?.reload('tls');
      this.#logger.info('TLS certificates reloaded; new connections use them');
    } catch (error) {
      this.#logger.warn(
        { err: error },
        `TLS certificates NOT reloaded, the previous ones stay in use: ${describeError(error)}`,
      );
    }
  }

  /**
   * Re-reads --auth-file (SIGHUP): later calls are checked against it and tokens are verified anew. A bad
   * file leaves the policy in force, with a warning.
   */
  async reloadAuth(): Promise<void> {
    if (this.#auth === null) return;
    try {
      this.#auth.reload();
      await this.#workers?.reload('auth');
      this.#logger.info({ authFile: this.#auth.file, ...this.#auth.counts }, 'auth file reloaded');
    } catch (error) {
      this.#logger.warn(
        { err: error, authFile: this.#auth.file },
        `auth file NOT reloaded, the previous tokens and permissions stay in force: ${describeError(error)}`,
      );
    }
  }

  /** Graceful shutdown, in the reverse order of start. Safe to call more than once. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    const started = Date.now();
    await this.#resources.disposeAsync();
    this.#logger.info({ tookMs: Date.now() - started }, 'kvs2 stopped');
  }
}

async function loadMetricsModules() {
  const [{ MetricsListener }, { NodeMetrics }] = await Promise.all([
    import('../metrics/metrics-listener.js'),
    import('../metrics/node-metrics.js'),
  ]);
  return { MetricsListener, NodeMetrics };
}

function loadAuth(file: string, logger: Logger, metrics: NodeMetrics | null): Authorizer {
  try {
    return new Authorizer({
      file,
      logger,
      ...(metrics === null ? {} : { onFailure: (reason: string) => metrics.authFailed(reason) }),
    });
  } catch (error) {
    if (error instanceof AuthFileError) throw new ConfigError('--auth-file', error.message);
    throw error;
  }
}

async function createLog(config: Config, logger: Logger, metrics: NodeMetrics | null): Promise<Log> {
  const log = await openLog(config, logger, metrics);
  return metrics === null ? log : metrics.meterLog(log);
}

async function openLog(config: Config, logger: Logger, metrics: NodeMetrics | null): Promise<Log> {
  if (config.kafka === null) return new EmbeddedLog({ dir: join(config.dataDir, 'log') });
  // Loaded only for Kafka: the client compiles its option validators when imported, which takes
  // ~0.4 s, more than half of an embedded node's start.
  const { openKafkaLog } = await import('../log/kafka/open-kafka-log.js');
  // The node's own transactional ids: a restart takes them back and aborts what its last run left open.
  return openKafkaLog(
    config.kafka,
    config.limits,
    logger,
    metrics?.kafkaClientMetrics,
    `kvs2-${nodeIdOf(config.dataDir)}`,
  );
}
