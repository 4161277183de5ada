import type { Log } from '../log/log.js';
import type { Logger } from '../logger.js';
import type { Store, UnversionedUpgrade } from '../store/store.js';

/**
 * Upgrades a store written before versions (store format 1) for the log it is built from, before anything
 * reads it. The store cannot choose by itself: how depends on the log, which only the replica knows.
 *
 * - A log that keeps history (Kafka) must give every key the real offset of its last record, as every other
 *   node applying the same records does: the store is cleared and rebuilt from the log (or from a peer's
 *   snapshot, with --bootstrap-from), as the replica rebuilds a store whose log was recreated.
 * - The embedded log has one partition and no other node to agree with, and keeps no history to rebuild
 *   from: every value gets the store's applied offset as its version (a stand-in: at least each key's real
 *   version, below any later write's, so versions still only grow).
 */
export function upgradeUnversionedStore(
  store: Store,
  log: Pick<Log, 'retainsHistory' | 'description'>,
  logger: Logger,
): void {
  if (!store.unversioned) return;
  const upgrade: UnversionedUpgrade = log.retainsHistory ? 'clear' : 'assign-applied-offset';
  const done = store.upgradeUnversioned(upgrade);
  if (done.upgrade === 'clear') {
    logger.warn(
      { keys: done.keys, storeFormat: 1 },
      `the store was written by an older kvs2 without versions (store format 1): cleared, rebuilding it from ` +
        `the start of ${log.description}, whose offsets are the keys' versions`,
    );
  } else {
    logger.info(
      { keys: done.keys, version: done.version, storeFormat: 1 },
      `the store was written by an older kvs2 without versions (store format 1): upgraded, its ${done.keys} ` +
        `keys have version ${done.version} (the applied offset), later writes their own`,
    );
  }
}
