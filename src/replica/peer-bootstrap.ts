import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { abortError, describeError, Kvs2Error } from '../errors.js';
import type { Log } from '../log/log.js';
import type { Logger } from '../logger.js';
import { offsetsForLog } from '../offsets.js';
import { storeDirOf } from '../snapshot/data-dir.js';
import { installStoreImage, type SniffedSnapshot, sniffSnapshot } from '../snapshot/image-install.js';
import { UNVERSIONED_SNAPSHOT_FORMAT } from '../snapshot/snapshot-format.js';
import { installSnapshot } from '../snapshot/snapshot-install.js';
import type { StoreProgress } from '../store/store.js';
import { readStoreFile } from '../store/store-file.js';
import { type LogFacts, planResume } from './resume-plan.js';
import { untilLogAnswers } from './start-replica.js';

/**
 * Where snapshots of peers' stores come from: the Snapshot RPC of each peer, asking for a store image
 * (cli/node.ts builds it). A peer may answer in either format: the bootstrap tells them apart.
 */
export type PeerSnapshotStream = (
  peer: string,
  signal: AbortSignal,
  /** Told how the bytes come: over a direct transfer beside the call, or streamed on it. */
  onTransfer?: (transfer: 'direct' | 'stream') => void,
) => AsyncIterable<Uint8Array>;

export interface PeerBootstrapOptions {
  /** Peers to ask, in order, `host:port` each; the next is tried when one fails. */
  readonly peers: readonly string[];
  readonly stream: PeerSnapshotStream;
  /** The node's data dir, whose store nothing has open yet: a snapshot is installed as its store. */
  readonly dataDir: string;
  /**
   * What the log this node reads says about itself (logFactsOf()): a snapshot must be of it, and recent
   * enough for it. It may come while the first peer's store image streams in: the image is judged (and
   * installed or refused) once it is known.
   */
  readonly logFacts: Promise<LogFacts>;
  readonly logger: Logger;
  readonly signal: AbortSignal;
  readonly now?: () => number;
}

/** What a bootstrap installed, or null when no peer could give a usable snapshot. */
export interface PeerBootstrapResult {
  readonly peer: string;
  /** What the peer sent: its store's file (a store image), or every entry (a peer before store images). */
  readonly format: 'store-image' | 'portable';
  readonly keys: number;
  readonly progress: StoreProgress;
  /** Bytes of the store image's file; null for a portable snapshot. */
  readonly bytes: number | null;
  /** From asking to the first bytes: the peer's wait for its replica, and its copy for a store image. */
  readonly firstByteMs: number;
  /** How the bytes came: a direct transfer beside the Snapshot call, or streamed on it. */
  readonly transfer: 'direct' | 'stream';
}

/** The facts of a snapshot a bootstrap judges it by, whatever its format. */
interface SnapshotFacts extends StoreProgress {
  /** Whether its entries lack versions (a portable snapshot of format 1, from a kvs2 before them). */
  readonly unversioned: boolean;
}

/**
 * Installs a peer's snapshot as the store of a new node (LinkedIn Venice's blob transfer, etcd's snapshot
 * to a new member), so that it reads from the log only what came after it instead of the whole topic. A
 * peer of this kvs2 sends a store image, its LMDB file as LMDB's compacting copy wrote it, which becomes
 * the store in one rename; an older peer sends the portable format, loaded entry by entry into a new store
 * that replaces the empty one the same way. Either is checked before it is used, with the very rule a
 * returning node follows (resume-plan.ts): it must be of this log (not another topic, not one since
 * recreated), hold no offset the log has already removed, and have been caught up within the topic's
 * delete.retention.ms, or deletes it never saw may have been compacted away. A refused snapshot, a peer
 * that cannot be reached, dies mid-stream or goes silent (the stream's stall limit, peer-snapshots.ts), or
 * a damaged stream leaves the data dir as it was, and the next peer is tried. When none works the caller reads the log from its start, as without peers.
 */
export async function bootstrapFromPeers(options: PeerBootstrapOptions): Promise<PeerBootstrapResult | null> {
  const { peers, logger } = options;
  const now = options.now ?? Date.now;
  const refusal = async (snapshot: SnapshotFacts): Promise<string | null> => {
    if (snapshot.logIdentity === null) return 'its store holds nothing yet';
    if (snapshot.unversioned) {
      return (
        `it is in snapshot format ${UNVERSIONED_SNAPSHOT_FORMAT}, without versions (the peer runs a kvs2 ` +
        "before them), and this node needs each key's offset as its version"
      );
    }
    const log = await options.logFacts;
    if (snapshot.logIdentity !== log.identity) {
      return `it is a snapshot of log ${snapshot.logIdentity}, and this node reads ${log.description} (log ${log.identity})`;
    }
    const plan = planResume(snapshot, log, now());
    return plan.kind === 'resume' ? null : plan.reason;
  };
  for (const peer of peers) {
    if (options.signal.aborted) return null;
    const started = now();
    logger.info({ peer }, `bootstrapping from peer ${peer}: asking for a snapshot of its store`);
    try {
      const result = await installFrom(peer, options, async (snapshot) => {
        const why = await refusal(snapshot);
        if (why !== null) throw new Kvs2Error('SNAPSHOT_INVALID', `the snapshot of ${peer} cannot be used: ${why}`);
      });
      logger.info(
        {
          peer,
          format: result.format,
          transfer: result.transfer,
          keys: result.keys,
          bytes: result.bytes,
          appliedOffsets: offsetsForLog(result.progress.appliedOffsets),
          firstByteMs: Math.round(result.firstByteMs),
          tookMs: now() - started,
        },
        `bootstrapped from peer ${peer}: ${result.keys} keys (${result.format}); the log is read from the snapshot's offsets on`,
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
 * Streams one peer's snapshot into the data dir's store. `accept` throws to refuse a snapshot, from its
 * metadata, before its content is taken.
 */
async function installFrom(
  peer: string,
  options: PeerBootstrapOptions,
  accept: (snapshot: SnapshotFacts) => Promise<void>,
): Promise<PeerBootstrapResult> {
  // Ends the peer's stream whatever happens here: a refused or failed snapshot must not keep the peer
  // copying or reading for nobody.
  const stop = new AbortController();
  const onAbort = (): void => stop.abort();
  options.signal.addEventListener('abort', onAbort, { once: true });
  let sniffed: SniffedSnapshot | undefined;
  let transfer: 'direct' | 'stream' = 'stream';
  try {
    const asked = performance.now();
    sniffed = await sniffSnapshot(
      options.stream(peer, stop.signal, (how) => {
        transfer = how;
      }),
    );
    const firstByteMs = performance.now() - asked;
    if (sniffed.format === 'store-image') {
      const { metadata } = await installStoreImage(sniffed.chunks, {
        dataDir: options.dataDir,
        accept: (image) => {
          // Says the peer got as far as sending (its copy made), and how much is coming.
          options.logger.info(
            { peer, transfer, keys: image.keys, bytes: image.bytes },
            `receiving a store image from peer ${peer}: ${image.keys} keys, ${image.bytes} bytes`,
          );
          return accept({ ...image, unversioned: false });
        },
        signal: options.signal,
      });
      const progress = progressOf(metadata);
      return {
        peer,
        format: 'store-image',
        keys: metadata.keys,
        progress,
        bytes: metadata.bytes,
        firstByteMs,
        transfer,
      };
    }
    const installed = await installSnapshot(sniffed.chunks, {
      dataDir: options.dataDir,
      // The store there is empty (bootstrapIfEmpty()), or holds only a load an older kvs2 never finished.
      force: true,
      accept: (metadata) =>
        accept({ ...metadata, unversioned: metadata.snapshotFormat === UNVERSIONED_SNAPSHOT_FORMAT }),
      signal: options.signal,
    });
    const progress = progressOf(installed.metadata);
    return { peer, format: 'portable', keys: installed.keys, progress, bytes: null, firstByteMs, transfer };
  } finally {
    stop.abort();
    options.signal.removeEventListener('abort', onAbort);
    // Ends the stream (and its client) also when an install gave up before reading it.
    await sniffed?.chunks[Symbol.asyncIterator]().return?.();
  }
}

function progressOf(facts: StoreProgress): StoreProgress {
  return { logIdentity: facts.logIdentity, appliedOffsets: facts.appliedOffsets, caughtUpAt: facts.caughtUpAt };
}

/** The facts of an opened log a snapshot is judged by (its identity, start offsets, retention). */
export async function logFactsOf(log: Log, signal: AbortSignal): Promise<LogFacts> {
  const identity = await log.open(signal);
  return {
    description: log.description,
    identity,
    retainsHistory: log.retainsHistory,
    tombstoneRetentionMs: log.tombstoneRetentionMs,
    startOffsets: await log.startOffsets(signal),
  };
}

export interface EmptyStoreBootstrapOptions {
  readonly dataDir: string;
  readonly peers: readonly string[];
  readonly stream: PeerSnapshotStream;
  readonly logger: Logger;
  readonly signal: AbortSignal;
}

/**
 * A bootstrap begun before the node's log exists: the first peer's store image already streams into the
 * data dir's staging folder. `judgedAgainst(log)` opens the log (waiting for it as the replica would), hands
 * its facts to the bootstrap, and resolves with what was installed, or null.
 */
export interface BegunBootstrap {
  judgedAgainst(log: Log): Promise<PeerBootstrapResult | null>;
}

/**
 * What the start-up runs before it opens the store when peers are given: a bootstrap, but only into an
 * empty store (none yet, one that never applied anything, or one a load cut short); a store that
 * bootstrapped (or read the log) before resumes as usual: null. It begins at once, before the log is
 * opened (a Kafka node spends ~0.5 s loading its client and opening the topic, while the peer copies its
 * store and sends it), and nothing is installed before the log's facts judged the snapshot.
 */
export async function beginBootstrapIfEmpty(options: EmptyStoreBootstrapOptions): Promise<BegunBootstrap | null> {
  if (!(await holdsEmptyStore(options.dataDir))) return null;
  const facts = Promise.withResolvers<LogFacts>();
  // Observed: a log that never answers (the start-up stopped) must not be an unhandled rejection.
  facts.promise.catch(() => {});
  // Ends the bootstrap when the log cannot be judged at all (a failure other than waiting for it).
  const stop = new AbortController();
  const signal = AbortSignal.any([options.signal, stop.signal]);
  const result = bootstrapFromPeers({ ...options, signal, logFacts: facts.promise });
  result.catch(() => {});
  return {
    async judgedAgainst(log: Log): Promise<PeerBootstrapResult | null> {
      try {
        const known = await untilLogAnswers(options.logger, options.signal, () => logFactsOf(log, options.signal));
        if (known === null) throw abortError(options.signal, 'bootstrapping from peers');
        facts.resolve(known);
      } catch (error) {
        stop.abort(error);
        facts.reject(error);
        await result.catch(() => null);
        throw error;
      }
      return result;
    },
  };
}

/** beginBootstrapIfEmpty() for a log already made: begun and judged in one go. */
export async function bootstrapIfEmpty(
  options: EmptyStoreBootstrapOptions & { readonly log: Log },
): Promise<PeerBootstrapResult | null> {
  const begun = await beginBootstrapIfEmpty(options);
  return begun === null ? null : begun.judgedAgainst(options.log);
}

/**
 * Whether the data dir's store is empty: none yet, one that never applied anything, or one holding a load
 * cut short. Read from the file, so nothing may have the store open.
 */
export async function holdsEmptyStore(dataDir: string): Promise<boolean> {
  const storeDir = storeDirOf(dataDir);
  if (!existsSync(join(storeDir, 'data.mdb'))) return true;
  const facts = await readStoreFile(storeDir);
  if (facts.loading) return true;
  const { logIdentity, appliedOffsets, caughtUpAt } = facts.progress;
  return logIdentity === null && appliedOffsets.size === 0 && caughtUpAt === null && facts.keys === 0;
}
