import { existsSync } from 'node:fs';
import { rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { abortError, Kvs2Error } from '../errors.js';
import { createEmbeddedLogAt } from '../log/embedded/log-at-offset.js';
import { StoreLoader } from '../store/store-loader.js';
import { holdsData, makeStagingDir, refuseIfNodeRunning, storeDirOf, swapIntoDataDir } from './data-dir.js';
import { decodeSnapshot } from './snapshot-decoder.js';
import { invalidSnapshot, type SnapshotMetadata, UNVERSIONED_SNAPSHOT_FORMAT } from './snapshot-format.js';

export interface InstallSnapshotOptions {
  /** The node's data dir: the store goes to `<dataDir>/store`, an embedded log to `<dataDir>/log`. */
  readonly dataDir: string;
  /** Replace the store (and embedded log) the data dir holds; without it such a data dir is refused. */
  readonly force?: boolean;
  /**
   * Called with the metadata before anything is written; throws to refuse the snapshot (a caller that
   * knows the log the node will read can refuse one from another log, or one too old for it).
   */
  readonly accept?: (metadata: SnapshotMetadata) => void | Promise<void>;
  /** Stops the install; the data dir is left as it was. */
  readonly signal?: AbortSignal;
}

export interface InstalledSnapshot {
  readonly metadata: SnapshotMetadata;
  readonly keys: number;
  /** Bytes the installed data.mdb takes on disk. */
  readonly bytesOnDisk: number;
  /** SHA-256 of the snapshot, as its trailer carries it (hex). */
  readonly sha256: string;
  /** Whether the data dir held a store or a log, now replaced. */
  readonly replaced: boolean;
}

/**
 * Verifies and installs a snapshot into a data dir, for `kvs2 snapshot restore` and a node bootstrapping
 * from a peer. The entries are appended in key order to a new store in a staging folder inside the data dir
 * as they arrive (memory holds one frame); only once the trailer checked out is the store's progress
 * written and synced, and then moved into place (data-dir.ts). A snapshot of a node on the embedded log
 * also gets an empty embedded log with the snapshot's log identity, starting at its offset, so that the
 * restored node continues the same log and honours tokens issued before the snapshot.
 *
 * Any failure (a damaged or truncated stream, a refusal by `accept`, an abort, a full disk) removes the
 * staging folder and leaves the data dir as it was. Refuses with DATA_DIR_IN_USE a data dir a node is
 * running on, or one that holds data unless `force`.
 */
export async function installSnapshot(
  chunks: AsyncIterable<Uint8Array>,
  options: InstallSnapshotOptions,
): Promise<InstalledSnapshot> {
  const { dataDir } = options;
  const checkTarget = async (): Promise<boolean> => {
    await refuseIfNodeRunning(dataDir, `restore a snapshot into ${dataDir}`);
    const held = holdsData(dataDir);
    const holds = held.store || held.log;
    if (holds && options.force !== true) {
      throw new Kvs2Error(
        'DATA_DIR_IN_USE',
        `${dataDir} already holds ${held.store ? `a store (${storeDirOf(dataDir)})` : 'an embedded log'}; ` +
          'pass --force to replace it with the snapshot',
      );
    }
    return holds;
  };
  await checkTarget();
  // A data dir made here is removed again on failure: "as it was" includes not existing.
  const createdDataDir = !existsSync(dataDir);
  const staging = await makeStagingDir(dataDir);
  let installed = false;
  let loader: StoreLoader | undefined;
  try {
    let metadata: SnapshotMetadata | undefined;
    let end: { keys: number; sha256: string } | undefined;
    let standIn: number | null = null;
    for await (const part of decodeSnapshot(chunks)) {
      if (options.signal?.aborted) throw abortError(options.signal, 'installing a snapshot');
      if (part.kind === 'metadata') {
        metadata = part.metadata;
        // The caller's judgement first: a bootstrap refuses a snapshot without versions in its own words.
        await options.accept?.(metadata);
        checkLogOffsets(metadata);
        standIn = standInVersion(metadata);
        loader = await StoreLoader.create(join(staging, 'store'));
      } else if (part.kind === 'entries') {
        const version = standIn;
        loader?.load(version === null ? part.entries : part.entries.map((entry) => ({ ...entry, version })));
      } else {
        end = part;
      }
    }
    if (metadata === undefined || end === undefined || loader === undefined) {
      throw invalidSnapshot('it has no trailer');
    }
    const loaded = await loader.finish({
      logIdentity: metadata.logIdentity,
      appliedOffsets: metadata.appliedOffsets,
      caughtUpAt: metadata.caughtUpAt,
    });
    let stagedLog: string | null = null;
    if (metadata.logKind === 'embedded' && metadata.logIdentity !== null) {
      stagedLog = join(staging, 'log');
      await createEmbeddedLogAt(stagedLog, metadata.logIdentity, metadata.appliedOffsets.get(0) ?? 0);
    }
    if (options.signal?.aborted) throw abortError(options.signal, 'installing a snapshot');
    // Again: a node may have been started on the data dir while the snapshot streamed in.
    const replaced = await checkTarget();
    await swapIntoDataDir(dataDir, { store: loaded.dir, log: stagedLog });
    installed = true;
    return { metadata, keys: loaded.keys, bytesOnDisk: loaded.bytesOnDisk, sha256: end.sha256, replaced };
  } finally {
    await loader?.abandon();
    await rm(staging, { recursive: true, force: true });
    if (!installed && createdDataDir) await rmdir(dataDir).catch(() => {});
  }
}

/**
 * The version every entry of a snapshot without versions (format 1, from a kvs2 before them) gets, as a
 * node upgrading a store of that age assigns them (replica/store-upgrade.ts); null for a snapshot with
 * versions. On the embedded log that is the snapshot's offset; a node on Kafka must have the real offsets as
 * versions, like every other node of its topic, which such a snapshot cannot give: refused.
 */
function standInVersion(metadata: SnapshotMetadata): number | null {
  if (metadata.snapshotFormat !== UNVERSIONED_SNAPSHOT_FORMAT) return null;
  if (metadata.logKind === 'kafka') {
    throw new Kvs2Error(
      'DATA_FORMAT_UNSUPPORTED',
      `the snapshot is in format version ${UNVERSIONED_SNAPSHOT_FORMAT}, written by a kvs2 before versions: a ` +
        "node on Kafka needs each key's offset as its version, which it does not hold. Take a new snapshot " +
        'with this kvs2, or start the node without one (it reads the topic)',
    );
  }
  return Math.max(1, metadata.appliedOffsets.get(0) ?? 0);
}

/** The embedded log has one partition, 0: a snapshot that says otherwise is not one of it. */
function checkLogOffsets(metadata: SnapshotMetadata): void {
  if (metadata.logKind !== 'embedded') return;
  for (const partition of metadata.appliedOffsets.keys()) {
    if (partition !== 0) {
      throw invalidSnapshot(`it is of an embedded log but names partition ${partition} (the embedded log has only 0)`);
    }
  }
}

/** Reads a whole snapshot and checks it (for `kvs2 snapshot inspect`), keeping nothing. */
export async function verifySnapshot(
  chunks: AsyncIterable<Uint8Array>,
  onMetadata?: (metadata: SnapshotMetadata) => void,
): Promise<{ readonly metadata: SnapshotMetadata; readonly keys: number; readonly sha256: string }> {
  let metadata: SnapshotMetadata | undefined;
  for await (const part of decodeSnapshot(chunks)) {
    if (part.kind === 'metadata') {
      metadata = part.metadata;
      onMetadata?.(metadata);
    } else if (part.kind === 'end' && metadata !== undefined) {
      return { metadata, keys: part.keys, sha256: part.sha256 };
    }
  }
  throw invalidSnapshot('it has no trailer');
}
