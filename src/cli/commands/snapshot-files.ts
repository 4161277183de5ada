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
  let bytes = 0;
  if (path === '-') {
    for await (const chunk of chunks) {
      bytes += chunk.length;
      if (!process.stdout.write(chunk)) await once(process.stdout, 'drain');
    }
    return bytes;
  }
  const target = resolve(path);
  const temporary = join(dirname(target), `.${basename(target)}.tmp-${process.pid}`);
  let handle: FileHandle | undefined = await open(temporary, 'w');
  try {
    for await (const chunk of chunks) {
      let written = 0;
      while (written < chunk.length) {
        written += (await handle.write(chunk, written, chunk.length - written)).bytesWritten;
      }
      bytes += chunk.length;
    }
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(temporary, target);
    await syncDir(dirname(target));
    return bytes;
  } catch (error) {
    await handle?.close().catch(() => {});
    await rm(temporary, { force: true });
    throw error;
  }
}
