import type { Kvs2Error } from '../errors.js';
import type { Logger } from '../logger.js';
import type { ConsistencyToken, ReplicaEntry, ReplicaScanRange } from './replica-api.js';

/**
 * The public surface of the co-located reader of `kvs2/replica`, in types only: what an application on a
 * node's host sees of the node's store read in place. The implementation (colocated-reader.ts) is loaded
 * when a reader is opened.
 */

export interface ColocatedReaderOptions {
  /** The running node's `--data-dir` (its store is in `store/` there). Nothing in it is ever written. */
  readonly dataDir: string;
  /** A pino logger (e.g. `logger.child({ component: 'kvs2' })`); default: silent. */
  readonly logger?: Logger;
}

export interface ColocatedPartitionStatus {
  readonly partition: number;
  /** The next offset the node applies: it has applied everything before, as saved with the data. */
  readonly appliedOffset: number;
}

export interface ColocatedReaderStatus {
  /** The identity of the log the node's store was built from; null while it has applied nothing. */
  readonly logIdentity: string | null;
  readonly partitions: readonly ColocatedPartitionStatus[];
  /** When the node last saved that it was caught up with its log (ms since the epoch); null if never. */
  readonly caughtUpAt: number | null;
  /** Keys held. */
  readonly keys: number;
  /** How many times the reader moved to a new store file (one restored or wiped under it) since it opened. */
  readonly reopened: number;
  /**
   * Why reads fail now, or null while they answer: the store was replaced and the new one cannot be opened
   * yet (no node has opened it, or it is loading a snapshot), or a node is loading a snapshot into it.
   * Positions and keys are then empty.
   */
  readonly unavailable: Kvs2Error | null;
}

/**
 * A running node's store, read in this process without an RPC: the node's own LMDB store, opened
 * read-only. Reads answer what the node has applied, synchronously; reads after a token wait until the
 * node has applied the writes it names. Writes go through Kvs2Client to the node. Errors are Kvs2Error.
 */
export interface Kvs2ColocatedReader {
  /** The value the node has applied now, or undefined. INVALID_ARGUMENT for an empty or over-long key. */
  get(key: Uint8Array): Buffer | undefined;
  /** Like get, with the key's version: the entry the node has applied now, or undefined. */
  getEntry(key: Uint8Array): ReplicaEntry | undefined;
  /** The values applied now, one per key in order (undefined where absent). */
  getMany(keys: readonly Uint8Array[]): Array<Buffer | undefined>;
  /** Keys, values and versions in byte order as applied now, from one consistent LMDB snapshot; `limit`: most entries. */
  scan(range: ReplicaScanRange, limit?: number): ReplicaEntry[];
  /**
   * The value once the node has applied the writes the token(s) name (a Set's token from this node or any
   * node of its log): read-your-writes. TOKEN_FROM_OTHER_LOG for a token of another log; LOG_RECREATED when
   * the node's store moves to another log meanwhile; DEADLINE_EXCEEDED / CANCELLED when the signal aborts.
   */
  getAfter(
    key: Uint8Array,
    after: ConsistencyToken | readonly ConsistencyToken[],
    signal?: AbortSignal,
  ): Promise<Buffer | undefined>;
  /** Like getMany, once the node has applied the writes the token(s) name. */
  getManyAfter(
    keys: readonly Uint8Array[],
    after: ConsistencyToken | readonly ConsistencyToken[],
    signal?: AbortSignal,
  ): Promise<ReadonlyArray<Buffer | undefined>>;
  /** The node's applied positions and log identity, from its store now. */
  status(): ColocatedReaderStatus;
  /** Closes the store; waiting reads fail with SHUTTING_DOWN, later calls throw it. Safe to call more than once. */
  close(): Promise<void>;
}
