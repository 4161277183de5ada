import type { PartitionLag, ReplicaProgressView } from '../replica/replica-progress.js';
import { fillRatio, type PageFill } from '../store/page-fill.js';
import type { StoreStats } from '../store/store.js';
import type { NodeHealthView, NodeStateName } from './node-health.js';

export type LogKind = 'embedded' | 'kafka';

/** What a node says about itself to an operator (the Status call, `kvs2 status`). */
export interface NodeStatus {
  readonly state: NodeStateName;
  readonly version: string;
  readonly logKind: LogKind;
  readonly logDescription: string;
  readonly partitions: readonly PartitionLag[];
  readonly keys: number;
  readonly storeBytes: number;
  /**
   * How full the store's leaf pages are against a key-ordered rewrite (store/page-fill.ts), 0..1; null when
   * not known (an empty store, or a store that cannot say).
   */
  readonly storeLeafFill: number | null;
  /** Unix ms when the replica was last known caught up; null if never. */
  readonly lastCaughtUpAtMs: number | null;
  /** A token naming everything the node has applied, as read replies carry. */
  readonly token: Buffer;
  readonly uptimeSeconds: number;
}

/** What answers the Status call: the node's report, or (in a serving worker) the node asked by message. */
export interface StatusSource {
  status(): NodeStatus | Promise<NodeStatus>;
}

/** Where each part of the status comes from; the node that owns them wires this. */
export interface NodeStatusSources {
  readonly version: string;
  readonly logKind: LogKind;
  readonly logDescription: string;
  /** Unix ms when the node started. */
  readonly startedAtMs: number;
  readonly health: NodeHealthView;
  readonly progress: ReplicaProgressView;
  readonly store: { stats(): StoreStats; pageFill?(): PageFill };
  /** The token of what the node has applied now (KvService.appliedToken). */
  readonly appliedToken: () => Buffer;
  readonly now?: () => number;
}

/** Answers the Status call from the node's parts, as they are at the moment of asking. */
export class NodeStatusReport implements StatusSource {
  readonly #sources: NodeStatusSources;
  readonly #now: () => number;

  constructor(sources: NodeStatusSources) {
    this.#sources = sources;
    this.#now = sources.now ?? Date.now;
  }

  status(): NodeStatus {
    const sources = this.#sources;
    const stats = sources.store.stats();
    const pages = sources.store.pageFill?.();
    return {
      state: sources.health.state(),
      version: sources.version,
      logKind: sources.logKind,
      logDescription: sources.logDescription,
      partitions: sources.progress.partitions(),
      keys: stats.keys,
      storeBytes: stats.bytesOnDisk,
      storeLeafFill: pages === undefined || pages.entries === 0 ? null : fillRatio(pages),
      lastCaughtUpAtMs: sources.progress.lastCaughtUpAtMs(),
      token: sources.appliedToken(),
      uptimeSeconds: Math.max(0, this.#now() - sources.startedAtMs) / 1000,
    };
  }
}
