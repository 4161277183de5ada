import { readFileSync } from 'node:fs';

/**
 * The kvs2 version, from package.json, read once: `kvs2 --version`, the start-up line, Status and the
 * build-info metric all say the same. The path holds from src/ (tests under tsx) and from dist/src/.
 */
export const KVS2_VERSION: string = readVersion();

function readVersion(): string {
  for (const path of ['../../package.json', '../package.json']) {
    try {
      const { name, version } = JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (name === 'kvs2' && typeof version === 'string') return version;
    } catch {
      // Not at this depth: try the next.
    }
  }
  throw new Error('cannot find the package.json of kvs2 to read its version');
}
