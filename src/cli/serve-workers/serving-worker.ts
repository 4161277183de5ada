/**
 * A serving worker: a thread of the node that runs a gRPC server and a KvService of its own over the
 * node's LMDB environment, on the node's port (SO_REUSEPORT). It parses no log records and applies
 * nothing: the node's replica does, and tells it what it committed. A stalled event loop here (a GC pause,
 * a large reply) holds only the connections the kernel gave this worker.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { GrpcApi } from '../../api/grpc-server.js';
import { HealthService } from '../../api/health.js';
import { ServerTls } from '../../api/server-tls.js';
import { Authorizer } from '../../auth/authorizer.js';
import type { LogLevel } from '../../config/config.js';
import { Kvs2Error } from '../../errors.js';
import { createLogger } from '../../logger.js';
import { KvService } from '../../service/kv-service.js';
import type { NodeStatus } from '../../service/node-status.js';
import { LmdbStore } from '../../store/lmdb-store.js';
import { ForwardedLog } from '../../threads/forwarded-log.js';
import { asBuffer } from '../../threads/record-packing.js';
import { ReplicaMirror } from '../../threads/replica-mirror.js';
import { ThreadLink } from '../../threads/thread-link.js';
import { toWireError } from '../../threads/thread-messages.js';
import { sendStallLogger } from '../send-stall-log.js';
import type { FromWorker, ToWorker, WorkerReply, WorkerSettings } from './worker-messages.js';

async function main(): Promise<void> {
  const port = parentPort;
  if (port === null) throw new Error('serving-worker.js runs only as a worker thread of a node');
  const settings = workerData as WorkerSettings;
  const logger = createLogger(settings.logLevel as LogLevel).child({ worker: settings.index });
  const link = new ThreadLink<FromWorker, WorkerReply>(port);
  // Messages that arrive while the worker starts wait here, in order.
  const early: ToWorker[] = [];
  let take: (message: ToWorker) => void = (message) => early.push(message);
  port.on('message', (messages: ToWorker[]) => {
    for (const message of messages) take(message);
  });

  let store: LmdbStore | undefined;
  let api: GrpcApi | undefined;
  let service: KvService | undefined;
  try {
    const tls = settings.tls === null ? null : ServerTls.load(settings.tls);
    // prom-client is loaded only for a node with /metrics.
    const metrics = settings.metrics
      ? new (await import('../../metrics/worker-metrics.js')).ServingWorkerMetrics()
      : null;
    const auth =
      settings.authFile === null
        ? null
        : new Authorizer({
            file: settings.authFile,
            logger,
            ...(metrics === null ? {} : { onFailure: (reason: string) => metrics.authFailed(reason) }),
          });
    store = LmdbStore.openReader(settings.storeDir);
    const openStore = store;
    const mirror = new ReplicaMirror(store, settings.identity, settings.health, logger);
    const log = new ForwardedLog(link);
    service = new KvService({
      log,
      conditional: log,
      store,
      applied: mirror.watermark,
      changes: { feed: mirror.changes, history: log },
      limits: settings.limits,
      maxReplyBytesInFlight: settings.maxReplyBytesInFlight,
    });
    const openService = service;
    const serving = new GrpcApi({
      service,
      status: {
        status: () =>
          link.request(
            (id) => ({ type: 'status', id }),
            (reply): NodeStatus => {
              if (reply.type !== 'status') throw new Error(`unexpected reply ${reply.type} to status`);
              return { ...reply.status, token: asBuffer(reply.status.token) };
            },
            undefined,
            'asking the node for its status',
          ),
      },
      health: new HealthService(mirror),
      limits: settings.limits,
      maxRequestBytes: settings.maxRequestBytes,
      requestTimeoutMs: settings.requestTimeoutMs,
      sendStall: { limitMs: settings.snapshotSendStallTimeoutMs, onStall: sendStallLogger(logger) },
      calls: metrics?.calls,
      tls,
      auth,
    });
    api = serving;
    metrics?.observeWatches(() => serving.openWatches);
    take = (message) => {
      if (mirror.take(message)) return;
      switch (message.type) {
        case 'reload':
          try {
            if (message.what === 'tls') tls?.reload();
            else auth?.reload();
            link.send({ type: 'reloaded', id: message.id, error: null });
          } catch (error) {
            link.send({ type: 'reloaded', id: message.id, error: toWireError(error) });
          }
          return;
        case 'metrics-request':
          void (metrics?.registry.getMetricsAsJSON() ?? Promise.resolve([])).then((json) =>
            link.send({ type: 'metrics', id: message.id, metrics: json }),
          );
          return;
        case 'shutdown':
          void shutdown(message.graceMs);
          return;
        default:
          if ('id' in message) link.deliver(message);
      }
    };
    const shutdown = async (graceMs: number): Promise<void> => {
      // Writes are refused before the calls in flight drain, as on the node.
      openService.close();
      const graceful = await serving.shutdown(graceMs);
      link.close(new Kvs2Error('SHUTTING_DOWN', 'the node is shutting down'));
      auth?.close();
      await openStore.close();
      link.send({ type: 'shutdown-done', graceful });
      link.flush();
      port.close();
    };
    for (const message of early.splice(0)) take(message);
    const bound = await serving.listenShared(settings.host, settings.port, (remote) =>
      logger.debug({ remote }, 'connection accepted'),
    );
    link.send({ type: 'listening', port: bound });
  } catch (error) {
    link.send({ type: 'fatal', error: toWireError(error) });
    link.flush();
    await api?.shutdown(0).catch(() => {});
    service?.close();
    await store?.close().catch(() => {});
    port.close();
  }
}

void main();
