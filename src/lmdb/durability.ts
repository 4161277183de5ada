/**
 * lmdb-js resolves a write's promise when its transaction commits (visible to readers); with
 * `separateFlushed` the promise also carries `flushed`, resolved once the commit is synced to disk.
 * These helpers keep that library detail in one place.
 */
export type CommitPromise<T> = Promise<T> & { flushed?: Promise<unknown> };

/** Resolves once the write behind `commit` is on disk. Requires an environment opened with `separateFlushed`. */
export async function untilFlushed<T>(commit: CommitPromise<T>): Promise<T> {
  const flushed = commit.flushed;
  const result = await commit;
  if (flushed !== undefined) await flushed;
  return result;
}
