import { cpSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
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
  for (const relative of ['package.json', 'bin', 'dist', 'proto', 'bench/proto', 'scripts']) {
    cpSync(join(REPO_DIR, relative), join(dir, relative), { recursive: true });
  }
  symlinkSync(join(REPO_DIR, 'node_modules'), join(dir, 'node_modules'), 'dir');
  treeDir = dir;
}
