import { lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/** Bytes allocated on disk under a path (files and folders, recursively); 0 when it does not exist. */
export function diskBytes(path: string): number {
  let stat: ReturnType<typeof lstatSync>;
  try {
    stat = lstatSync(path);
  } catch {
    return 0;
  }
  if (!stat.isDirectory()) return stat.blocks * 512;
  let total = 0;
  for (const entry of readdirSync(path)) total += diskBytes(join(path, entry));
  return total;
}
