import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Kvs2Error } from '../../errors.js';
import { KVS2_VERSION } from '../../version.js';

/**
 * The embedded log's format version, in a file of its own in the log's folder (one line: the number), so
 * that a kvs2 that cannot read the folder refuses it instead of misreading it. A folder without one was
 * written before versions were recorded: its segment files (or the LMDB log it migrates from) are format 1.
 */
export const LOG_FORMAT_FILE = 'format';
/** The format this kvs2 writes. */
export const LOG_FORMAT_VERSION = 1;
/** The formats this kvs2 reads. */
export const READABLE_LOG_FORMATS: readonly number[] = [1];

/**
 * Checks the folder's format version and writes it where there is none; throws DATA_FORMAT_UNSUPPORTED for
 * a version this kvs2 does not read. Called before anything else in the folder is read or changed.
 */
export async function adoptLogFormat(dir: string, description: string, syncDir: () => Promise<void>): Promise<number> {
  let text: string;
  try {
    text = (await readFile(join(dir, LOG_FORMAT_FILE), 'utf8')).trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    // Written to a temporary file, synced and renamed: a crash leaves no file or a whole one.
    const temporary = join(dir, `${LOG_FORMAT_FILE}.tmp`);
    await writeFile(temporary, `${LOG_FORMAT_VERSION}\n`, { flush: true });
    await rename(temporary, join(dir, LOG_FORMAT_FILE));
    await syncDir();
    return LOG_FORMAT_VERSION;
  }
  const found = /^\d+$/.test(text) ? Number(text) : undefined;
  if (found !== undefined && READABLE_LOG_FORMATS.includes(found)) return found;
  throw new Kvs2Error(
    'DATA_FORMAT_UNSUPPORTED',
    `${description} is in format version ${JSON.stringify(found ?? text)}, which this kvs2 (${KVS2_VERSION}) ` +
      `cannot read: it reads embedded log format version ${READABLE_LOG_FORMATS.join(', ')}. It was written by ` +
      'a newer kvs2: run that version (or a later one) on this data dir.',
  );
}
