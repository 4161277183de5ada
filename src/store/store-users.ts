import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { open } from 'lmdb';
import { describeError, Kvs2Error } from '../errors.js';
import { MAP_SIZE_BYTES, MAX_DBS } from './saved-progress.js';

/**
 * The ids of the other processes that have the LMDB store in `dir` open, such as a node running on it;
 * empty when there is none (or no store). LMDB keeps a reader slot per process that has read, holding its
 * pid, in lock.mdb, and a node reads its store as it opens it. Slots of processes that died (even by
 * SIGKILL) are cleared first (mdb_reader_check), so only live processes count.
 *
 * Call it before this process opens the store itself: lmdb-js shares one environment per path.
 */
export async function otherProcessesUsingStore(dir: string): Promise<number[]> {
  if (!existsSync(join(dir, 'data.mdb'))) return [];
  let list: string;
  try {
    const env = open({ path: dir, maxDbs: MAX_DBS, mapSize: MAP_SIZE_BYTES, readOnly: true });
    try {
      env.readerCheck();
      list = env.readerList();
    } finally {
      await env.close();
    }
  } catch (error) {
    throw new Kvs2Error(
      'STORE_UNAVAILABLE',
      `cannot read the reader table of the LMDB store in ${dir}: ${describeError(error)}`,
      {
        cause: error,
      },
    );
  }
  // "(no active readers)", or a header line and then "pid thread txnid" per slot.
  const pids = new Set<number>();
  for (const line of list.split('\n')) {
    const match = /^\s*(\d+)\s+[0-9a-f]+\s/i.exec(line);
    if (match !== null) pids.add(Number(match[1]));
  }
  pids.delete(process.pid);
  return [...pids].sort((a, b) => a - b);
}
