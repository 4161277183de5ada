import { describeError, Kvs2Error } from '../errors.js';
import type { Log } from '../log/log.js';
import type { Logger } from '../logger.js';
import { offsetsForLog } from '../offsets.js';
import { decodeSnapshot } from '../snapshot/snapshot-decoder.js';
import { type SnapshotMetadata, UNVERSIONED_SNAPSHOT_FORMAT } from '../snapshot/snapshot-format.js';
import type { StoreLoad } from '../store/lmdb-store.js';
import type { Store, StoreProgress } from '../store/store.js';
import { planResume } from './resume-plan.js';

/** Where snapshots of peers' stores come from: the Snapshot RPC of each peer (cli/node.ts builds it). */
export type PeerSnapshotStream = (peer: string, signal: AbortSignal) => AsyncIterable<Uint8Array>;

/** The part of the store a bootstrap fills: an empty store that loads a snapshot. */
export interface LoadableStore {
  readonly description: string;
  beginLoad(): StoreLoad;
}

export interface PeerBootstrapOptions {
  /** Peers to ask, in order, `host:port` each; the next is tried when one fails. */
  readonly peers: readonly string[];
  readonly stream: PeerSnapshotStream;
  readonly store: LoadableStore;
  /** The log this node reads, already opened: a snapshot must be of it, and recent enough for it. */
  readonly log: Log;
  readonly logIdentity: string;
  readonly logger: Logger;
  readonly signal: AbortSignal;
  readonly now?: () => number;
}

/** What a bootstrap installed, or null when no peer could give a usable snapshot. */
export interface PeerBootstrapResult {
  readonly peer: string;
  readonly keys: number;
  readonly progress: StoreProgress;
}

/**
 * Fills an empty store from a peer's snapshot (LinkedIn Venice's blob transfer, etcd's snapshot to a new
 * member), so that a new node reads from the log only what came after it instead of the whole topic. The
 * snapshot is checked before a single entry is loaded, with the very rule a returning node follows
 * (resume-plan.ts): it must be of this log (not another topic, not one since recreated), hold no offset the
 * log has already removed, and have been caught up within the topic's delete.retention.ms, or deletes it
 * never saw may have been compacted away. A refused snapshot, a peer that cannot be reached or dies
 * mid-stream, or a damaged stream leaves the store empty again, and the next peer is tried. When none works
 * the caller reads the log from its start, as without peers.
 */
export async function bootstrapFromPeers(options: PeerBootstrapOptions): Promise<PeerBootstrapResult | null> {
  const { peers, logger, log } = options;
  const now = options.now ?? Date.now;
  const facts = {
    description: log.description,
    identity: options.logIdentity,
    retainsHistory: log.retainsHistory,
    tombstoneRetentionMs: log.tombstoneRetentionMs,
    startOffsets: await log.startOffsets(options.signal),
  };
  for (const peer of peers) {
    if (options.signal.aborted) return null;
    const started = now();
    logger.info({ peer }, `bootstrapping from peer ${peer}: asking for a snapshot of its store`);
    try {
      const result = await loadFrom(peer, options, (metadata) => {
        const progress = progressOf(metadata);
        if (metadata.logIdentity === null) return 'its store holds nothing yet';
        if (metadata.snapshotFormat === UNVERSIONED_SNAPSHOT_FORMAT) {
          return (
            `it is in snapshot format ${UNVERSIONED_SNAPSHOT_FORMAT}, without versions (the peer runs a kvs2 ` +
            "before them), and this node needs each key's offset as its version"
          );
        }
        if (metadata.logIdentity !== options.logIdentity) {
          return `it is a snapshot of log ${metadata.logIdentity}, and this node reads ${log.description} (log ${options.logIdentity})`;
        }
        const plan = planResume(progress, facts, now());
        return plan.kind === 'resume' ? null : plan.reason;
      });
      logger.info(
        {
          peer,
          keys: result.keys,
          appliedOffsets: offsetsForLog(result.progress.appliedOffsets),
          tookMs: now() - started,
        },
        `bootstrapped from peer ${peer}: ${result.keys} keys; the log is read from the snapshot's offsets on`,
      );
      return result;
    } catch (error) {
      if (options.signal.aborted) return null;
      logger.warn(
        { peer, err: error },
        `bootstrap from peer ${peer} failed, the store is empty again: ${describeError(error)}`,
      );
    }
  }
  logger.warn(
    { peers },
    'no peer gave a usable snapshot: reading the log from its start, as a node without --bootstrap-from does',
  );
  return null;
}

/**
 * Streams one peer's snapshot into the store. `refusal` says why a snapshot cannot be used (null: it can),
 * from its metadata, before anything is loaded.
 */
async function loadFrom(
  peer: string,
  options: PeerBootstrapOptions,
  refusal: (metadata: SnapshotMetadata) => string | null,
): Promise<PeerBootstrapResult> {
  // Ends the peer's stream whatever happens here: a refused or failed snapshot must not keep its
  // read transaction open on the peer.
  const stop = new AbortController();
  const onAbort = (): void => stop.abort();
  options.signal.addEventListener('abort', onAbort, { once: true });
  let load: StoreLoad | undefined;
  let metadata: SnapshotMetadata | undefined;
  try {
    for await (const part of decodeSnapshot(options.stream(peer, stop.signal))) {
      if (part.kind === 'metadata') {
        const why = refusal(part.metadata);
        if (why !== null) throw new Kvs2Error('SNAPSHOT_INVALID', `the snapshot of ${peer} cannot be used: ${why}`);
        metadata = part.metadata;
        load = options.store.beginLoad();
      } else if (part.kind === 'entries') {
        load?.add(part.entries);
      } else if (load !== undefined && metadata !== undefined) {
        const progress = progressOf(metadata);
        await load.finish(progress);
        load = undefined;
        return { peer, keys: part.keys, progress };
      }
    }
    throw new Kvs2Error('SNAPSHOT_INVALID', `the snapshot stream of ${peer} ended without its metadata`);
  } catch (error) {
    await load?.abandon();
    throw error;
  } finally {
    stop.abort();
    options.signal.removeEventListener('abort', onAbort);
  }
}

function progressOf(metadata: SnapshotMetadata): StoreProgress {
  return {
    logIdentity: metadata.logIdentity,
    appliedOffsets: metadata.appliedOffsets,
    caughtUpAt: metadata.caughtUpAt,
  };
}

/**
 * What the start-up runs between opening the log and starting the replica when peers are given: a bootstrap,
 * but only into an empty store. A store that bootstrapped (or read the log) before resumes as usual.
 */
export function bootstrapIfEmpty(options: {
  readonly peers: readonly string[];
  readonly stream: PeerSnapshotStream;
  readonly store: LoadableStore & Pick<Store, 'progress' | 'stats'>;
  readonly log: Log;
  readonly logger: Logger;
}): (logIdentity: string, signal: AbortSignal) => Promise<void> {
  const { store } = options;
  return async (logIdentity, signal) => {
    const { logIdentity: applied, appliedOffsets } = store.progress();
    if (applied !== null || appliedOffsets.size > 0 || store.stats().keys > 0) return;
    await bootstrapFromPeers({ ...options, logIdentity, signal });
  };
}
