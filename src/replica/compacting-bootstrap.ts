import type { Kvs2Error } from '../errors.js';
import type { Log } from '../log/log.js';
import type { Logger } from '../logger.js';
import { storeDirOf } from '../snapshot/data-dir.js';
import { type CompactedStore, compactDataDir } from '../snapshot/data-dir-snapshot.js';
import { LmdbStore } from '../store/lmdb-store.js';
import { Replica } from './replica.js';
import { startReplica } from './start-replica.js';

export interface CompactingBootstrapOptions {
  /** The node's data dir, whose store is empty and not open: the bootstrap fills it, then rewrites it. */
  readonly dataDir: string;
  readonly log: Log;
  readonly logger: Logger;
  /** The start-up's end: stops reading, closes the store, and resolves null (the next start resumes). */
  readonly signal: AbortSignal;
  /** Called between the read and the rewrite: the node gives back the heap the read grew (memory-release.ts). */
  readonly beforeRewrite?: () => void;
}

export interface CompactingBootstrapResult extends CompactedStore {
  /** Reading the log into the store, and rewriting it. */
  readonly readMs: number;
  readonly compactMs: number;
}

/**
 * `--compact-after-bootstrap on`: a node whose store is empty reads the whole log into it, then rewrites it in
 * key order (kvs2 compact), before it opens the store to serve.
 *
 * A replica applies the log in offset order, which for a topic's keys is random order, and LMDB's pages
 * then end up about 2/3 full: 219 MiB of data.mdb for 1,000,000 keys of 16 + 100 bytes against 131 MiB in
 * key order, the page cache (and so the node's resident memory) to match, and a store image of that layout
 * for every node that bootstraps from this one (docs/benchmarks.md, "peer-layout"). Rewriting costs about
 * half the read again (4.96 -> 7.86 s to SERVING for those 1,000,000 keys, bench/peer-layout.ts); it is done
 * once, while the node is not serving yet.
 * The replica that reads here is this function's own: the node's replica then starts on the rewritten store
 * from its offsets, as after any restart, and reads only what was written meanwhile.
 *
 * Resolves null when `signal` aborted first (the store keeps what was read: the next start resumes reading
 * it, without this rewrite); rejects with what stopped the replica, which the start-up reports.
 */
export async function bootstrapThenCompact(
  options: CompactingBootstrapOptions,
): Promise<CompactingBootstrapResult | null> {
  const { dataDir, log, logger, signal } = options;
  const started = performance.now();
  const fatal = Promise.withResolvers<never>();
  // Observed: a replica may report a fatal error after the race below is decided.
  fatal.promise.catch(() => {});
  const store = LmdbStore.open(storeDirOf(dataDir));
  try {
    const replica = new Replica({ log, store, logger, onFatal: (error: Kvs2Error) => fatal.reject(error) });
    const stopStarting = new AbortController();
    const starting = startReplica(log, replica, logger, (error) => fatal.reject(error), stopStarting.signal);
    const stopped = Promise.withResolvers<'aborted'>();
    const onAbort = (): void => stopped.resolve('aborted');
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      if (signal.aborted) return null;
      const outcome = await Promise.race([
        replica.whenCaughtUp().then(() => 'caught up' as const),
        stopped.promise,
        fatal.promise,
      ]);
      if (outcome === 'aborted') return null;
    } finally {
      signal.removeEventListener('abort', onAbort);
      stopStarting.abort();
      await replica.stop();
      await starting;
    }
  } finally {
    await store.close();
  }
  if (signal.aborted) return null;
  const readMs = performance.now() - started;
  options.beforeRewrite?.();
  const compacting = performance.now();
  const compacted = await compactDataDir(dataDir);
  const result = { ...compacted, readMs, compactMs: performance.now() - compacting };
  const mib = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1);
  logger.info(
    {
      keys: result.keys,
      bytesBefore: result.bytesBefore,
      bytesAfter: result.bytesAfter,
      readMs: Math.round(result.readMs),
      compactMs: Math.round(result.compactMs),
    },
    `compacted the store after reading the log: ${result.keys} keys, data.mdb ${mib(result.bytesBefore)} -> ${mib(result.bytesAfter)} MiB`,
  );
  return result;
}
