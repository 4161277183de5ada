import { open, readFile, stat, unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/** An empty lock file older than this was not being written: it is left over (e.g. by flock-based tools). */
const EMPTY_LOCK_STALE_MS = 10_000;

/**
 * An exclusive lock held as a file created with O_EXCL (portable where flock(1) is not): the file holds
 * the owner's pid, so a lock left behind by a process that died is recognised as stale and taken over.
 */
export async function acquireLock(path: string, timeoutMs: number): Promise<() => Promise<void>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const handle = await open(path, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      return () => unlink(path).catch(() => {});
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const owner = Number((await readFile(path, 'utf8').catch(() => '')).trim());
    // An empty file is a lock being written this instant (wait for it like a held one), unless it is old.
    if ((Number.isInteger(owner) && owner > 0 && !pidExists(owner)) || (!(owner > 0) && (await isOld(path)))) {
      await unlink(path).catch(() => {});
      continue;
    }
    if (Date.now() > deadline) throw new Error(`${path} is held by pid ${owner || '?'}; gave up after ${timeoutMs} ms`);
    await sleep(200);
  }
}

/** Whether a process with this pid exists (signal 0 checks without sending anything). */
export function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function isOld(path: string): Promise<boolean> {
  const info = await stat(path).catch(() => undefined);
  return info !== undefined && Date.now() - info.mtimeMs > EMPTY_LOCK_STALE_MS;
}
