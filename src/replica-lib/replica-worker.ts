/**
 * The replica's worker thread of an in-process replica with `applyOn: 'worker'`: the Kafka client, the
 * record parsing and the store's writes run here, so that the application's thread keeps only its reads
 * (worker-replica.ts). It is a node's main thread in small: it owns the log, the replica and the store's
 * one writer, tells the application's thread every commit (threads/mirror-source.ts) and answers the log
 * requests of its KvService (threads/log-requests.ts): a watch's history, end offsets.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import { isKvs2Error, Kvs2Error } from '../errors.js';
import { LogRequests } from '../threads/log-requests.js';
import { MessageBatches } from '../threads/message-batches.js';
import { mirrorReplica } from '../threads/mirror-source.js';
import { isLogRequest, toWireError } from '../threads/thread-messages.js';
import { replicaConfig } from './replica-options.js';
import { openReplicaStack, type ReplicaStack, startReplicaStack } from './replica-stack.js';
import type { FromReplicaWorker, ReplicaWorkerData, ToReplicaWorker } from './replica-worker-messages.js';

async function main(): Promise<void> {
  const port = parentPort;
  if (port === null) throw new Error('replica-worker.js runs only as the worker thread of an in-process replica');
  const data = workerData as ReplicaWorkerData;
  const out = new MessageBatches<FromReplicaWorker>((messages) => port.postMessage(messages));
  // The application's logger cannot cross threads: its lines go there, to be logged by it.
  const logger = pino({ level: data.logLevel }, { write: (line: string) => out.queue({ type: 'log', line }) });
  // Messages that arrive while the replica opens wait here, in order.
  const early: ToReplicaWorker[] = [];
  let take: (message: ToReplicaWorker) => void = (message) => early.push(message);
  port.on('message', (messages: ToReplicaWorker[]) => {
    for (const message of messages) take(message);
  });
  const exit = (): void => {
    out.flush();
    port.close();
  };

  let failed = false;
  const onFatal = (error: Kvs2Error): void => {
    failed = true;
    out.queue({ type: 'fatal', error: toWireError(error) });
  };
  let parts: ReplicaStack;
  try {
    // This thread only writes: its commits run here (not on libuv's pool), so wherever the application
    // or the scheduler puts this thread, the replica's whole cost goes with it.
    parts = await openReplicaStack(
      replicaConfig(data.options),
      logger,
      { onFatal, onCaughtUpChange: (now) => out.queue({ type: 'caught-up', now }) },
      { inlineCommits: true },
    );
  } catch (error) {
    out.queue({ type: 'open-failed', error: toWireError(error) });
    exit();
    return;
  }
  const { replica, store, resources } = parts;
  // Deferred before the replica starts, so that it runs after the replica stopped: what the replica applies
  // while it stops is still told.
  resources.defer(mirrorReplica(replica, (message) => out.queue(message)));
  const requests = new LogRequests({ log: parts.log, conditional: parts.conditional, post: (m) => out.queue(m) });
  resources.defer(() => requests.abortAll());
  const progress = (): void => {
    const ends = replica.progress.partitions().map((p) => [p.partition, p.endOffset] as const);
    out.queue({ type: 'progress', ends });
  };
  resources.defer(replica.progress.onUpdate(progress));
  let closing = false;
  const close = async (): Promise<void> => {
    try {
      await resources.disposeAsync();
    } catch (error) {
      logger.error({ err: error }, `closing the in-process replica failed: ${(error as Error).message}`);
    }
    out.queue({ type: 'closed' });
    exit();
  };
  take = (message) => {
    if (message.type === 'close') {
      if (!closing) void close();
      closing = true;
    } else if (isLogRequest(message)) requests.take(message);
  };
  const announce = (): void =>
    out.queue({ type: 'store-open', identity: store.progress().logIdentity ?? replica.watermark.logIdentity });
  // A store of the format before versions is upgraded as the replica starts; the application's thread may
  // open it only then (its reader refuses that format), so openReplica waits for the start.
  const upgradeFirst = store.unversioned;
  if (!upgradeFirst) announce();
  const start = startReplicaStack(parts, logger, onFatal, () => failed);
  void start.whenStarted.then(() => {
    if (upgradeFirst && store.unversioned) {
      const error = new Kvs2Error('STORE_UNAVAILABLE', 'the store was not upgraded to versions: see the log');
      out.queue({ type: 'open-failed', error: toWireError(error) });
    } else if (upgradeFirst) announce();
    out.queue({ type: 'start-ended', started: start.started() });
  });
  for (const message of early.splice(0)) take(message);
}

main().catch((error: unknown) => {
  // Only a bug gets here: the worker's 'error' event tells the application's thread.
  throw isKvs2Error(error) ? error : new Kvs2Error('INCONSISTENT_STATE', String(error), { cause: error });
});
