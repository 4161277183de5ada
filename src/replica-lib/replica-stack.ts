import type { Config, PeerBootstrapConfig } from '../config/config.js';
import { ConfigError } from '../config/config-error.js';
import type { Kvs2Error } from '../errors.js';
import { openKafkaLog } from '../log/kafka/open-kafka-log.js';
import type { Log } from '../log/log.js';
import type { Logger } from '../logger.js';
import type { PeerSnapshotStream } from '../replica/peer-bootstrap.js';
import { bootstrapIfEmpty } from '../replica/peer-bootstrap.js';
import { Replica } from '../replica/replica.js';
import { startReplica } from '../replica/start-replica.js';
import { ConditionalWrites } from '../service/conditional-writes.js';
import { storeDirOf } from '../snapshot/data-dir.js';
import { LmdbStore } from '../store/lmdb-store.js';
import { optionError } from './replica-options.js';

/** The owner's part of an in-process replica: the Kafka log, the store it writes, the replica between them. */
export interface ReplicaStack {
  readonly log: Log;
  readonly store: LmdbStore;
  readonly replica: Replica;
  /** Decides conditional writes against this replica (the node's own). */
  readonly conditional: ConditionalWrites;
  /** Everything opened, closed in reverse by disposeAsync(). */
  readonly resources: AsyncDisposableStack;
}

export interface ReplicaStackEvents {
  readonly onFatal: (error: Kvs2Error) => void;
  readonly onCaughtUpChange: (caughtUp: boolean) => void;
}

export interface ReplicaStackOptions {
  /**
   * The store commits on the thread that applies (LmdbStoreOptions.inlineCommits): for the replica's own
   * worker thread, never for the application's.
   */
  readonly inlineCommits?: boolean;
}

/**
 * Opens the log, the store (a peer's image installed first with `bootstrapFrom`) and the replica, as
 * src/cli/node.ts assembles them, from the same parts; nothing reads the topic until startReplicaStack.
 * The same on the application's thread (`applyOn: 'caller'`) and on the replica's worker ('worker').
 */
export async function openReplicaStack(
  config: Config & { readonly kafka: NonNullable<Config['kafka']> },
  logger: Logger,
  events: ReplicaStackEvents,
  options: ReplicaStackOptions = {},
): Promise<ReplicaStack> {
  const { dataDir } = config;
  const peers = config.bootstrap;
  // Reads the token file now: an unreadable one is refused before anything connects, as for a node.
  const peerSnapshots = peers === null ? null : await peerStream(peers);
  const stack = new AsyncDisposableStack();
  try {
    const log = stack.adopt(openKafkaLog(config.kafka, config.limits, logger), (l) => l.close());
    if (peers !== null && peerSnapshots !== null) {
      // Before the store opens, as a node does: a peer's store image becomes the store's whole file.
      await bootstrapIfEmpty({
        dataDir,
        peers: peers.peers,
        stream: peerSnapshots,
        log,
        logger,
        signal: new AbortController().signal,
      });
    }
    const store = stack.adopt(
      LmdbStore.open(storeDirOf(dataDir), { inlineCommits: options.inlineCommits ?? false }),
      (s) => s.close(),
    );
    if (store.clearedUnfinishedLoad) {
      logger.warn('the store held a snapshot load that never finished: cleared, starting over');
    }
    const replica = stack.adopt(
      new Replica({ log, store, logger, onFatal: events.onFatal, onCaughtUpChange: events.onCaughtUpChange }),
      (r) => r.stop(),
    );
    const conditional = new ConditionalWrites({ log, applied: replica.watermark, feed: replica.changes, store });
    return { log, store, replica, conditional, resources: stack.move() };
  } catch (error) {
    await stack.disposeAsync().catch(() => {});
    throw error;
  }
}

export interface StartedReplica {
  /** True once the topic is open and the replica reads it (tokens name positions in it only then). */
  readonly started: () => boolean;
  /** Resolves when the start-up loop ends: started, failed for good, or stopped. */
  readonly whenStarted: Promise<void>;
}

/**
 * Starts reading the topic in the background, with a node's start-up retries; the stack's disposal stops
 * it first. `failed` says whether onFatal was called (a start that failed is no start).
 */
export function startReplicaStack(
  parts: ReplicaStack,
  logger: Logger,
  onFatal: (error: Kvs2Error) => void,
  failed: () => boolean,
): StartedReplica {
  const stopStarting = new AbortController();
  let started = false;
  const starting = startReplica(parts.log, parts.replica, logger, onFatal, stopStarting.signal).then(() => {
    started = !stopStarting.signal.aborted && !failed();
  });
  parts.resources.defer(async () => {
    stopStarting.abort();
    // A replica still starting waits on the log with its own signal, which only stop() aborts.
    await parts.replica.stop();
    await starting;
  });
  return { started: () => started, whenStarted: starting };
}

/** The peers' Snapshot RPC, loaded only when asked for: it brings the gRPC client. */
async function peerStream(peers: PeerBootstrapConfig): Promise<PeerSnapshotStream> {
  const { peerSnapshotStream } = await import('./peer-snapshots.js');
  try {
    return peerSnapshotStream(peers, null);
  } catch (error) {
    throw error instanceof ConfigError ? optionError(error) : error;
  }
}
