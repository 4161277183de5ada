/**
 * `kvs2/replica`: a replica of a kvs2 topic inside a Node application (README, "In-process replica"). Its
 * own entry point, so that `kvs2` and `kvs2/client` never load LMDB, the Kafka client or the replica.
 */
export { Kvs2Error, type Kvs2ErrorCode } from '../errors.js';
export type { Logger } from '../logger.js';
export {
  type ConsistencyToken,
  Kvs2Replica,
  openReplica,
  type ReplicaChange,
  type ReplicaEntry,
  type ReplicaPartitionStatus,
  type ReplicaScanRange,
  type ReplicaStatus,
  type ReplicaWatchOptions,
} from './kvs2-replica.js';
export type { ReplicaKafkaSecurity, ReplicaOptions } from './replica-options.js';
