import type { Offsets } from '../offsets.js';
import type { StoreProgress } from '../store/store.js';

/** What the log says about itself at start-up, as far as resuming is concerned. */
export interface LogFacts {
  readonly description: string;
  readonly identity: string;
  readonly retainsHistory: boolean;
  readonly tombstoneRetentionMs: number | null;
  readonly startOffsets: Offsets;
}

export type ResumePlan =
  /** Continue from the store's applied offsets (for an empty store: from the start of the log). */
  | { readonly kind: 'resume' }
  /** Throw the store's content away and read the log from its start. */
  | { readonly kind: 'rebuild'; readonly reason: string }
  /** The store cannot be used with this log and cannot be rebuilt from it. */
  | { readonly kind: 'refuse'; readonly reason: string };

/**
 * Decides whether a store can resume from where it stopped. It cannot when the log was recreated, when
 * records it still needs were removed by retention, or when it was away so long that compaction may have
 * removed deletes (tombstones) it never saw: it would then serve deleted keys forever.
 */
export function planResume(progress: StoreProgress, log: LogFacts, now: number): ResumePlan {
  const isEmpty = progress.logIdentity === null && progress.appliedOffsets.size === 0;
  if (isEmpty) return { kind: 'resume' };
  const cannotRebuild = (reason: string): ResumePlan =>
    log.retainsHistory ? { kind: 'rebuild', reason } : { kind: 'refuse', reason };

  if (progress.logIdentity !== null && progress.logIdentity !== log.identity) {
    return cannotRebuild(
      `the store was built from log ${progress.logIdentity}, but ${log.description} is now log ${log.identity} ` +
        '(deleted and recreated)',
    );
  }
  for (const [partition, applied] of progress.appliedOffsets) {
    const start = log.startOffsets.get(partition) ?? 0;
    if (applied < start) {
      return cannotRebuild(
        `partition ${partition} now starts at offset ${start}, but the store has applied only up to ${applied}: ` +
          'retention removed records it never saw',
      );
    }
  }
  if (log.tombstoneRetentionMs !== null) {
    const since = progress.caughtUpAt;
    if (since === null || now - since >= log.tombstoneRetentionMs) {
      const away = since === null ? 'for an unknown time' : `for ${Math.round((now - since) / 1000)} s`;
      return cannotRebuild(
        `the store was last caught up ${away}, which is not less than the log's tombstone retention ` +
          `(delete.retention.ms = ${log.tombstoneRetentionMs}): deletes it missed may have been compacted away`,
      );
    }
  }
  return { kind: 'resume' };
}
