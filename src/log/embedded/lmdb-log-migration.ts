import { existsSync } from 'node:fs';
import { open as openFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { open } from 'lmdb';
import { encodeFrame, type FrameRecord } from './frame-codec.js';
import { decodeRecord } from './record-codec.js';
import { segmentFileName } from './segment-scan.js';

/** The files of the earlier embedded log: an LMDB environment with `records` (by offset) and `meta`. */
const LMDB_FILES = ['data.mdb', 'lock.mdb'];
/** Most bytes one migrated frame carries (a single larger record gets a frame of its own). */
const FRAME_BYTES = 1024 * 1024;

export function hasLmdbLog(dir: string): boolean {
  return existsSync(join(dir, 'data.mdb'));
}

/** The LMDB files left behind once the migration finished (a crash can come between its last two steps). */
export async function removeLmdbLog(dir: string): Promise<void> {
  for (const name of LMDB_FILES) await rm(join(dir, name), { force: true });
}

/**
 * Rewrites a log of the earlier format (an LMDB database keyed by offset) as one segment, keeping its
 * identity, its start offset and the offsets of its records (gaps, where an append failed, stay gaps).
 * Returns the identity; the caller writes it down last, since the identity file is what marks the
 * migration done (a crash before it means the next open migrates again, from the untouched LMDB files).
 */
export async function migrateLmdbLog(dir: string, syncDir: () => Promise<void>): Promise<string | undefined> {
  const env = open({ path: dir, maxDbs: 4 });
  try {
    const records = env.openDB<Buffer, number>({ name: 'records', encoding: 'binary' });
    const meta = env.openDB<unknown, string>({ name: 'meta' });
    const identity = meta.get('identity');
    const start = meta.get('startOffset');
    const startOffset = typeof start === 'number' ? start : 0;
    const file = await openFile(join(dir, segmentFileName(startOffset)), 'w');
    try {
      let run: FrameRecord[] = [];
      let runBase = startOffset;
      let runBytes = 0;
      let position = 0;
      const flush = async (): Promise<void> => {
        if (run.length === 0) return;
        const frame = encodeFrame(runBase, run);
        await file.write(frame, 0, frame.length, position);
        position += frame.length;
        run = [];
        runBytes = 0;
      };
      for (const { key: offset, value } of records.getRange({ start: startOffset })) {
        // Copied: lmdb-js may hand out a buffer it reuses for the next entry.
        const record = decodeRecord(Buffer.from(value), offset);
        if (run.length > 0 && (offset !== runBase + run.length || runBytes >= FRAME_BYTES)) await flush();
        if (run.length === 0) runBase = offset;
        run.push(record);
        runBytes += value.length;
      }
      await flush();
      await file.datasync();
    } finally {
      await file.close();
    }
    await syncDir();
    return typeof identity === 'string' ? identity : undefined;
  } finally {
    await env.close();
  }
}
