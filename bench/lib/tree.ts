import { cpSync, existsSync, symlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: this file runs as dist/bench/lib/tree.js. */
export const REPO_DIR = fileURLToPath(new URL('../../../', import.meta.url));

let treeDir = REPO_DIR;

/** A path in the tree the run executes: the snapshot once `snapshotTree` ran, else the repository. */
export function treePath(relative: string): string {
  return join(treeDir, relative);
}

/**
 * Copies what the run executes (the build, the protos, the scripts) into `dir`, so that edits and
 * rebuilds in the working tree during a long run cannot change what is measured halfway through.
 */
export function snapshotTree(dir: string): void {
  copyTree(REPO_DIR, dir);
  treeDir = dir;
}

/** The same snapshot of another built kvs2 checkout (a baseline to compare with); returns where it is. */
export function snapshotOtherTree(from: string, dir: string): string {
  const root = resolve(from);
  if (!existsSync(join(root, 'dist/src/cli/main.js')) || !existsSync(join(root, 'node_modules'))) {
    throw new Error(`${root} is not a built kvs2 checkout: run npm ci there first`);
  }
  copyTree(root, dir);
  return dir;
}

function copyTree(from: string, dir: string): void {
  // The descriptor set is read at start-up (reflection, the strict request check); older trees have none.
  const parts = [
    'package.json',
    'bin',
    'dist',
    'proto',
    'bench/proto',
    'bench/setup.sh',
    'scripts',
    'src/gen/descriptor-set.binpb',
  ];
  for (const relative of parts) {
    if (existsSync(join(from, relative))) cpSync(join(from, relative), join(dir, relative), { recursive: true });
  }
  symlinkSync(join(from, 'node_modules'), join(dir, 'node_modules'), 'dir');
}
