/**
 * `kvs2/replica`: a replica of a kvs2 topic inside a Node application (README, "In-process replica"). Its
 * own entry point, so that `kvs2` and `kvs2/client` never load LMDB, the Kafka client or the replica; and
 * its types name nothing of the implementation, so that an application type-checks against this file only.
 */

import { Kvs2Error } from '../errors.js';
import type { ColocatedReaderOptions, Kvs2ColocatedReader } from './colocated-api.js';
import type { Kvs2Replica, ReplicaOptions } from './replica-api.js';

export { Kvs2Error, type Kvs2ErrorCode } from '../errors.js';
export type { Logger } from '../logger.js';
export type {
  ColocatedPartitionStatus,
  ColocatedReaderOptions,
  ColocatedReaderStatus,
  Kvs2ColocatedReader,
} from './colocated-api.js';
export type {
  ConsistencyToken,
  Kvs2Replica,
  ReplicaChange,
  ReplicaEntry,
  ReplicaKafkaSecurity,
  ReplicaOptions,
  ReplicaPartitionStatus,
  ReplicaScanRange,
  ReplicaStatus,
  ReplicaWatchOptions,
} from './replica-api.js';

/**
 * Opens an in-process replica of a kvs2 topic on Kafka: its store in `dataDir`, the topic, and the replica
 * that applies one to the other, assembled as a node assembles them, with the same start-up retries
 * (brokers that are down are waited for). Resolves once the store is open: reads answer at once from what
 * it holds, and `whenCaughtUp()` says when it holds everything the topic did. With `bootstrapFrom` and an
 * empty store, a peer's store is installed first (the topic is then opened before this resolves, waiting
 * for brokers that are down). `applyOn` (default 'worker') says which thread applies the topic: a worker
 * thread of the replica's own, or the caller's. Kafka only: refuses
 * (INVALID_ARGUMENT) options without it and a data dir holding a node's embedded log; DATA_DIR_IN_USE when
 * another process (a node) has the store open.
 */
export async function openReplica(options: ReplicaOptions): Promise<Kvs2Replica> {
  if (options?.applyOn === 'caller') {
    const { openInProcessReplica } = await import('./kvs2-replica.js');
    return openInProcessReplica(options);
  }
  if (options?.applyOn !== undefined && options.applyOn !== 'worker') {
    throw new Kvs2Error(
      'INVALID_ARGUMENT',
      `openReplica: applyOn must be 'worker' or 'caller', got ${String(options.applyOn)}`,
    );
  }
  const { openWorkerReplica } = await import('./worker-replica.js');
  return openWorkerReplica(options);
}

/**
 * Opens a running node's store, on this host, for reading in this process without an RPC (README,
 * "Co-located reader"): `dataDir` is the node's `--data-dir`, on the embedded log or on Kafka. The store is
 * opened read-only and nothing in the data dir is written. Reads answer what the node has applied;
 * `getAfter` waits for a token's writes. STORE_UNAVAILABLE when the data dir holds no store, one no node has
 * opened yet, or one a node is loading from a peer; DATA_FORMAT_UNSUPPORTED for a store format this kvs2
 * does not read. While a reader is open, `kvs2 compact` and `kvs2 snapshot restore` refuse the data dir
 * (DATA_DIR_IN_USE), as they do while the node runs.
 */
export async function openColocatedReader(options: ColocatedReaderOptions): Promise<Kvs2ColocatedReader> {
  const { openColocated } = await import('./colocated-reader.js');
  return openColocated(options);
}
