import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, from dist/test/support/ where the compiled tests run. */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const KVS2_BIN = join(REPO_ROOT, 'bin', 'kvs2.js');
export const SEED_PROTO = join(REPO_ROOT, 'test', 'fixtures', 'seed', 'kvs2.proto');

/** A fresh temporary folder; `remove()` deletes it. */
export async function tempDir(prefix: string): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `kvs2-${prefix}-`));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}
