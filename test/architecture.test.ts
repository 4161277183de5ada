import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from './support/paths.js';

/**
 * The layers of docs/architecture.md and what each may import of ours. A base module (a file directly in
 * src/) may be imported by every layer; `log` and `store` know nothing of each other.
 */
const MAY_IMPORT: Readonly<Record<string, readonly string[]>> = {
  config: [],
  gen: [],
  lmdb: [],
  log: ['config', 'lmdb'],
  store: ['lmdb'],
  replica: ['config', 'log', 'store', 'snapshot'],
  snapshot: ['config', 'lmdb', 'log', 'store'],
  service: ['config', 'log', 'store', 'replica', 'snapshot'],
  auth: [],
  api: ['config', 'service', 'gen', 'auth'],
  metrics: ['log', 'store', 'replica', 'service', 'api'],
  client: ['gen'],
  threads: ['config', 'log', 'store', 'replica', 'service'],
  'replica-lib': ['config', 'log', 'store', 'replica', 'snapshot', 'service', 'client', 'threads'],
  cli: [
    'config',
    'lmdb',
    'log',
    'store',
    'replica',
    'snapshot',
    'service',
    'auth',
    'api',
    'metrics',
    'client',
    'threads',
    'replica-lib',
  ],
};
/** Base modules may import only each other and config (the logger takes its level type from there). */
const BASE_MAY_IMPORT = ['config'];

const SRC = join(REPO_ROOT, 'src');

async function sourceFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...(await sourceFiles(path)));
    else if (entry.name.endsWith('.ts')) files.push(path);
  }
  return files;
}

/** The layer of a file under src/: its first folder, or null for a base module. */
function layerOf(file: string): string | null {
  const parts = relative(SRC, file).split('/');
  return parts.length > 1 ? (parts[0] as string) : null;
}

test('every layer imports only the layers below it (docs/architecture.md)', async () => {
  const violations: string[] = [];
  for (const file of await sourceFiles(SRC)) {
    const layer = layerOf(file);
    if (layer !== null && !(layer in MAY_IMPORT)) violations.push(`${relative(SRC, file)}: a layer not in the map`);
    const allowed = layer === null ? BASE_MAY_IMPORT : (MAY_IMPORT[layer] ?? []);
    const text = await readFile(file, 'utf8');
    for (const match of text.matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)) {
      const target = resolve(dirname(file), (match[1] as string).replace(/\.js$/, '.ts'));
      const targetLayer = layerOf(target);
      if (targetLayer === null || targetLayer === layer || allowed.includes(targetLayer)) continue;
      violations.push(`${relative(SRC, file)} (${layer ?? 'base'}) imports ${relative(SRC, target)}`);
    }
  }
  assert.deepEqual(violations, []);
});
