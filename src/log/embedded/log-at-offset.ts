import { existsSync, readdirSync } from 'node:fs';
import { mkdir, open as openFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Kvs2Error } from '../../errors.js';
import { IDENTITY_FILE } from './embedded-log.js';
import { LOG_FORMAT_FILE, LOG_FORMAT_VERSION } from './log-format.js';
import { segmentFileName } from './segment-scan.js';

const IDENTITY_PREFIX = 'embedded:';

/**
 * Creates the folder of an embedded log that holds no records, has the given identity ("embedded:<id>", as
 * EmbeddedLog.open() returns it) and gives its next record the offset `nextOffset`: what a store restored
 * from a snapshot needs beside it, so that its node continues the same log (tokens issued before the
 * snapshot still name positions in it) instead of starting a new one at offset 0.
 *
 * The log is the one EmbeddedLog would have after deleting every segment below `nextOffset`: its format
 * file, its identity file, and one empty segment file named after `nextOffset` (which sets where the
 * next frame goes and where the log starts). Every file and the folder are synced.
 */
export async function createEmbeddedLogAt(dir: string, identity: string, nextOffset: number): Promise<void> {
  if (!identity.startsWith(IDENTITY_PREFIX) || !/^\S{1,200}$/.test(identity.slice(IDENTITY_PREFIX.length))) {
    throw new Kvs2Error('INVALID_ARGUMENT', `${JSON.stringify(identity)} is not an embedded log's identity`);
  }
  if (!Number.isSafeInteger(nextOffset) || nextOffset < 0) {
    throw new Kvs2Error('INVALID_ARGUMENT', `${nextOffset} is not a log offset`);
  }
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    throw new Kvs2Error('LOG_UNAVAILABLE', `cannot create an embedded log in ${dir}: the folder is not empty`);
  }
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, LOG_FORMAT_FILE), `${LOG_FORMAT_VERSION}\n`, { flush: true });
  await writeFile(join(dir, IDENTITY_FILE), `${identity.slice(IDENTITY_PREFIX.length)}\n`, { flush: true });
  await writeFile(join(dir, segmentFileName(nextOffset)), Buffer.alloc(0), { flush: true });
  const folder = await openFile(dir, 'r');
  try {
    await folder.sync();
  } finally {
    await folder.close();
  }
}
