import { readFileSync } from 'node:fs';

/**
 * The version of this kvs2, from package.json (the one place it is written down), for `--version`, the
 * start-up log line, metrics and the Status RPC. Read once, at import: it cannot change while running.
 * This file runs as dist/src/version.js, two folders below the package root.
 */
export const KVS2_VERSION: string = readVersion(new URL('../../package.json', import.meta.url));

function readVersion(packageJson: URL): string {
  const { version } = JSON.parse(readFileSync(packageJson, 'utf8')) as { version?: unknown };
  if (typeof version !== 'string' || version === '') throw new Error(`${packageJson.pathname} has no version`);
  return version;
}
