import { existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, open as openFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Kvs2Error } from '../errors.js';
import { otherProcessesUsingStore } from '../store/store-users.js';

/** Where a node keeps its store and its embedded log (src/cli/node.ts). */
export function storeDirOf(dataDir: string): string {
  return join(dataDir, 'store');
}

export function logDirOf(dataDir: string): string {
  return join(dataDir, 'log');
}

/** Names of the temporary folders snapshot commands make inside a data dir (same file system: renames). */
const STAGING_PREFIX = '.snapshot-staging-';
const REPLACED_PREFIX = '.snapshot-replaced-';

/** DATA_DIR_IN_USE when a process (a node) has the data dir's store open: `doing` says what was refused. */
export async function refuseIfNodeRunning(dataDir: string, doing: string): Promise<void> {
  const pids = await otherProcessesUsingStore(storeDirOf(dataDir));
  if (pids.length > 0) {
    throw new Kvs2Error(
      'DATA_DIR_IN_USE',
      `cannot ${doing}: process ${pids.join(', ')} has the store in ${storeDirOf(dataDir)} open ` +
        '(a kvs2 node running on this data dir?); stop it first',
    );
  }
}

/** Whether the data dir holds a store (data.mdb) or an embedded log (a non-empty log folder). */
export function holdsData(dataDir: string): { readonly store: boolean; readonly log: boolean } {
  const log = logDirOf(dataDir);
  return {
    store: existsSync(join(storeDirOf(dataDir), 'data.mdb')),
    log: existsSync(log) && readdirSync(log).length > 0,
  };
}

/** A fresh folder inside the data dir for a store (and log) being built; removed by the caller. */
export async function makeStagingDir(dataDir: string): Promise<string> {
  await mkdir(dataDir, { recursive: true });
  await removeLeftoverStaging(dataDir);
  return mkdtemp(join(dataDir, STAGING_PREFIX));
}

/**
 * Removes the staging folders a restore, a compaction or a peer's snapshot being installed left when its
 * process died: they hold nothing in use (only a finished one is renamed into place), but a store's worth of
 * disk. Run where nothing else may be staging in the data dir: a node's start, or before new staging. Folders
 * of replaced data stay: after a crash mid-restore one may hold the only copy of the old log. Returns the
 * names removed.
 */
export async function removeLeftoverStaging(dataDir: string): Promise<string[]> {
  let names: string[];
  try {
    names = readdirSync(dataDir);
  } catch {
    return [];
  }
  const leftovers = names.filter((name) => name.startsWith(STAGING_PREFIX));
  for (const name of leftovers) await rm(join(dataDir, name), { recursive: true, force: true });
  return leftovers;
}

/**
 * Moves a staged store (a folder with a synced data.mdb) and optionally a staged embedded log into the data
 * dir, replacing what is there. Each step is a rename, and the order keeps every state a crash can leave
 * either whole or refused by the node at start (never a store that silently misses data):
 *   1. the old log goes aside: an old store without its log is refused (its log identity is gone);
 *   2. the new data.mdb replaces the old one in one rename: a new store without its log is refused too;
 *   3. the new log goes in.
 * A crash in between needs the restore run again (with --force).
 */
export async function swapIntoDataDir(dataDir: string, staged: { store: string; log: string | null }): Promise<void> {
  const logDir = logDirOf(dataDir);
  const replaced = await mkdtemp(join(dataDir, REPLACED_PREFIX));
  if (existsSync(logDir)) {
    await rename(logDir, join(replaced, 'log'));
    await syncDir(dataDir);
  }
  await replaceStoreData(dataDir, staged.store);
  if (staged.log !== null) {
    await rename(staged.log, logDir);
    await syncDir(dataDir);
  }
  await rm(replaced, { recursive: true, force: true });
}

/** Replaces the data dir's data.mdb by the staged one, in one rename (compaction: the log stays as it is). */
export async function replaceStoreData(dataDir: string, stagedStore: string): Promise<void> {
  const storeDir = storeDirOf(dataDir);
  await mkdir(storeDir, { recursive: true });
  await rename(join(stagedStore, 'data.mdb'), join(storeDir, 'data.mdb'));
  // The old lock file describes the old data; LMDB makes a new one on the next open.
  await rm(join(storeDir, 'lock.mdb'), { force: true });
  await syncDir(storeDir);
  await syncDir(dataDir);
}

export async function syncDir(dir: string): Promise<void> {
  const handle = await openFile(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
