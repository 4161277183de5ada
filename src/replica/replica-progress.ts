/**
 * How far the replica has applied the log, for operators (Status, metrics, readiness). The contract of
 * issue 14 shared by the node-state and metrics work; the node-state work implements it.
 */

export interface PartitionLag {
  readonly partition: number;
  /** Next offset to apply. */
  readonly appliedOffset: number;
  /** Log end as last learnt, null until known. */
  readonly endOffset: number | null;
  /** endOffset - appliedOffset, null until known. */
  readonly lagRecords: number | null;
}

export interface ReplicaProgressView {
  partitions(): readonly PartitionLag[];
  /** Date.now() when last caught up, null if never. */
  lastCaughtUpAtMs(): number | null;
  /** 0..1 share of the first catch-up done; 1 once caught up once. */
  bootstrapRatio(): number;
}
