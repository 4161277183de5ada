import { once } from 'node:events';
import { type FileHandle, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { syncDir } from '../../snapshot/data-dir.js';

/** Chunks from FILE, or from stdin for `-`. Opened at once, so a missing file fails before anything else. */
export async function openInput(path: string): Promise<{ chunks: AsyncIterable<Uint8Array>; close(): Promise<void> }> {
  if (path === '-') return { chunks: process.stdin, close: async () => {} };
  const handle = await open(path, 'r');
  return {
    chunks: handle.createReadStream({ highWaterMark: 1024 * 1024, autoClose: false }),
    close: () => handle.close(),
  };
}

/**
 * Writes chunks to FILE atomically: into a temporary file beside it, synced, then renamed over FILE (and the
 * folder synced), so FILE is either the whole new snapshot or what it was before. `-` writes to stdout,
 * at its pace. Returns the bytes written.
 */
export async function writeOutput(path: string, chunks: AsyncIterable<Uint8Array>): Promise<number> {
  const { bytes } = await writeCheckedOutput(path, chunks, async (written) => {
    let read = 0;
    for await (const chunk of written) read += chunk.length;
    return read;
  });
  return bytes;
}

/**
 * Writes chunks to FILE as writeOutput does while `check` reads them, each once it is written (a snapshot
 * from a node is verified as it arrives, not read twice). FILE is replaced only once `check` resolved
 * having read every chunk; if it throws, or the chunks do (a stream cut short), the temporary file is
 * removed and FILE is left as it was. To stdout (`-`) the bytes have gone out already: only the failure
 * (and the exit code) says that they are not a snapshot.
 */
export async function writeCheckedOutput<T>(
  path: string,
  chunks: AsyncIterable<Uint8Array>,
  check: (written: AsyncIterable<Uint8Array>) => Promise<T>,
): Promise<{ readonly bytes: number; readonly checked: T }> {
  let bytes = 0;
  let ended = false;
  const checkAll = async (write: (chunk: Uint8Array) => Promise<void>): Promise<T> => {
    const written = (async function* () {
      for await (const chunk of chunks) {
        await write(chunk);
        bytes += chunk.length;
        yield chunk;
      }
      ended = true;
    })();
    try {
      const checked = await check(written);
      if (!ended) throw new Error('the check stopped before the end of the stream');
      return checked;
    } finally {
      // A check that stopped early leaves the source open (a stream from a node): end it.
      await written.return(undefined);
    }
  };
  if (path === '-') {
    const checked = await checkAll(async (chunk) => {
      if (!process.stdout.write(chunk)) await once(process.stdout, 'drain');
    });
    return { bytes, checked };
  }
  const target = resolve(path);
  const temporary = join(dirname(target), `.${basename(target)}.tmp-${process.pid}`);
  let handle: FileHandle | undefined = await open(temporary, 'w');
  try {
    const file = handle;
    const checked = await checkAll(async (chunk) => {
      let written = 0;
      while (written < chunk.length) {
        written += (await file.write(chunk, written, chunk.length - written)).bytesWritten;
      }
    });
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(temporary, target);
    await syncDir(dirname(target));
    return { bytes, checked };
  } catch (error) {
    await handle?.close().catch(() => {});
    await rm(temporary, { force: true });
    throw error;
  }
}
