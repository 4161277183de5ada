import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../config/config-error.js';

const NODE_ID_FILE = 'node-id';
const NODE_ID = /^[A-Za-z0-9-]{1,64}$/;

/**
 * This node's id, kept in `node-id` in its data directory (made on first start): it names the node's Kafka
 * transactional ids (`kvs2-<id>-<n>`), so that a restarted node takes them back and aborts at once what its
 * previous run left open, while two nodes never share one. A store restored from a snapshot or copied from a
 * peer does not carry it: only the data directory does.
 */
export function nodeIdOf(dataDir: string): string {
  const path = join(dataDir, NODE_ID_FILE);
  let text: string | undefined;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new ConfigError('--data-dir', `cannot read ${path}: ${(error as Error).message}`);
    }
  }
  if (text !== undefined) {
    if (!NODE_ID.test(text)) {
      throw new ConfigError('--data-dir', `${path} holds ${JSON.stringify(text)}, not a node id (letters, digits, -)`);
    }
    return text;
  }
  const id = randomUUID();
  mkdirSync(dataDir, { recursive: true });
  // Written whole or not at all: a crash leaves no half id for the next start to refuse.
  const staged = `${path}.new`;
  writeFileSync(staged, `${id}\n`, { flush: true });
  renameSync(staged, path);
  return id;
}
