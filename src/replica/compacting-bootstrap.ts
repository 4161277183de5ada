import type { Kvs2Error } from '../errors.js';
import type { Log } from '../log/log.js';
import type { Logger } from '../logger.js';
import { storeDirOf } from '../snapshot/data-dir.js';
import { type CompactedStore, compactDataDir } from '../snapshot/data-dir-snapshot.js';
import { LmdbStore } from '../store/lmdb-store.js';
import { fillRatio, REWRITE_PAYS_BELOW_FILL } from '../store/page-fill.js';
import { Replica } from './replica.js';
import { startReplica } from './start-replica.js';

/**
 * `--compact-after-bootstrap on`: a bootstrapped store is rewritten in key order (kvs2 compact) before the
 * node opens it to serve, when that pays.
 *
 * A replica applies the log in offset order, which for a topic's keys is random order, and LMDB's pages
 * then end up about 2/3 full: 219 MiB of data.mdb for 1,000,000 keys of 16 + 100 bytes against 131 MiB in
 * key order, the page cache (and so the node's resident memory) to match, and a store image of that layout
 * for every node that bootstraps from this one (a peer's image keeps its peer's layout: bench/peer-layout.ts).
 * Rewriting costs about half the read again (4.96 -> 7.86 s to SERVING for those 1,000,000 keys); it is done
 * once, while the node is not serving yet.
 */

export interface LogIntoStoreOptions {
  /** The node's data dir, whose store is empty and not open. */
  readonly dataDir: string;
  readonly log: Log;
  readonly logger: Logger;
  /** The start-up's end: stops reading, closes the store, and resolves false (the next start resumes). */
  readonly signal: AbortSignal;
}

/**
 * Reads the whole log into the data dir's empty store with a replica of its own, then stops it and closes
 * the store: the node's replica starts on the (rewritten) store from its offsets afterwards, as after any
 * restart, and reads only what was written meanwhile. Resolves true once caught up, false when `signal`
 * aborted first (the store keeps what was read: the next start resumes reading it, without a rewrite);
 * rejects with what stopped the replica, which the start-up reports.
 */
export async function readLogIntoStore(options: LogIntoStoreOptions): Promise<boolean> {
  const { dataDir, log, logger, signal } = options;
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
      if (signal.aborted) return false;
      const outcome = await Promise.race([
        replica.whenCaughtUp().then(() => 'caught up' as const),
        stopped.promise,
        fatal.promise,
      ]);
      return outcome === 'caught up' && !signal.aborted;
    } finally {
      signal.removeEventListener('abort', onAbort);
      stopStarting.abort();
      await replica.stop();
      await starting;
    }
  } finally {
    await store.close();
  }
}

export interface CompactIfItPaysOptions {
  /** The node's data dir, whose store is not open. */
  readonly dataDir: string;
  readonly logger: Logger;
  /** Where the store came from, for the log line: `the log`, `peer host:port`. */
  readonly filledFrom: string;
  /** Called before a rewrite: the node gives back the heap its bootstrap grew (memory-release.ts). */
  readonly beforeRewrite?: () => void;
}

export interface CompactingResult extends CompactedStore {
  readonly compactMs: number;
  readonly fill: number;
}

/**
 * Rewrites the data dir's store in key order when its leaf pages are estimated below REWRITE_PAYS_BELOW_FILL of
 * a key-ordered rewrite's (a store read from a topic, or a random-order peer's image); says so either way.
 * Resolves with what the rewrite did, or null when it did not pay.
 */
export async function compactIfItPays(options: CompactIfItPaysOptions): Promise<CompactingResult | null> {
  const { dataDir, logger, filledFrom } = options;
  const store = LmdbStore.open(storeDirOf(dataDir));
  let fill: number;
  let leafPages: number;
  try {
    const pages = store.pageFill();
    fill = fillRatio(pages);
    leafPages = pages.leafPages;
  } finally {
    await store.close();
  }
  if (fill >= REWRITE_PAYS_BELOW_FILL) {
    logger.info(
      { fill: round(fill), leafPages },
      `the store filled from ${filledFrom} is in key order already (leaf pages ${percent(fill)} full): not rewritten`,
    );
    return null;
  }
  options.beforeRewrite?.();
  const started = performance.now();
  const compacted = await compactDataDir(dataDir);
  const result = { ...compacted, compactMs: performance.now() - started, fill };
  const mib = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1);
  logger.info(
    {
      keys: result.keys,
      bytesBefore: result.bytesBefore,
      bytesAfter: result.bytesAfter,
      fill: round(fill),
      compactMs: Math.round(result.compactMs),
    },
    `compacted the store filled from ${filledFrom} (leaf pages ${percent(fill)} full): ${result.keys} keys, ` +
      `data.mdb ${mib(result.bytesBefore)} -> ${mib(result.bytesAfter)} MiB`,
  );
  return result;
}

const round = (ratio: number): number => Math.round(ratio * 1000) / 1000;
const percent = (ratio: number): string => `${Math.round(ratio * 100)}%`;
