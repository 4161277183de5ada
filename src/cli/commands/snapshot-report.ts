import { offsetsForLog } from '../../offsets.js';
import { encodeToken, logTagOf } from '../../service/consistency-token.js';
import type { SnapshotMetadata } from '../../snapshot/snapshot-format.js';
import { formatToken } from './bytes-encoding.js';
import { humanDuration } from './status-format.js';

/**
 * What a snapshot's metadata says, as aligned `name  value` lines (`nowMs` dates "ago"). The token names
 * the snapshot's position: a read with `--after` it waits until a node has at least the snapshot's data.
 */
export function metadataLines(metadata: SnapshotMetadata, nowMs: number): string[] {
  const positions = [...metadata.appliedOffsets].sort((a, b) => a[0] - b[0]);
  const fields: Array<[string, string]> = [
    [
      'format',
      `${metadata.snapshotFormat} (written by kvs2 ${metadata.kvs2Version}, store format ${metadata.storeFormat})`,
    ],
    ['created', dated(metadata.createdAt, nowMs)],
    [
      'log',
      metadata.logIdentity === null
        ? 'none (the store never applied anything)'
        : `${metadata.logKind} (${metadata.logIdentity})`,
    ],
    [
      'positions',
      positions.length === 0 ? 'none' : positions.map(([partition, offset]) => `${partition}:${offset}`).join(' '),
    ],
    ['last caught up', metadata.caughtUpAt === null ? 'never' : dated(metadata.caughtUpAt, nowMs)],
    ['keys', String(metadata.keys)],
  ];
  const token = tokenOf(metadata);
  if (token !== null) fields.push(['token', token]);
  const width = Math.max(...fields.map(([name]) => name.length)) + 2;
  return fields.map(([name, value]) => `${name.padEnd(width)}${value}`);
}

/** metadataLines as one text block, dated against now. */
export function snapshotLines(metadata: SnapshotMetadata): string {
  return `${metadataLines(metadata, Date.now()).join('\n')}\n`;
}

/** `--output json`-style object of the metadata (times as ISO strings). */
export function metadataObject(metadata: SnapshotMetadata): Record<string, unknown> {
  return {
    snapshotFormat: metadata.snapshotFormat,
    kvs2Version: metadata.kvs2Version,
    storeFormat: metadata.storeFormat,
    createdAt: new Date(metadata.createdAt).toISOString(),
    logKind: metadata.logKind,
    logIdentity: metadata.logIdentity,
    appliedOffsets: offsetsForLog(metadata.appliedOffsets),
    caughtUpAt: metadata.caughtUpAt === null ? null : new Date(metadata.caughtUpAt).toISOString(),
    keys: metadata.keys,
    token: tokenOf(metadata),
  };
}

function tokenOf(metadata: SnapshotMetadata): string | null {
  if (metadata.logIdentity === null) return null;
  return formatToken(encodeToken(logTagOf(metadata.logIdentity), metadata.appliedOffsets));
}

function dated(unixMs: number, nowMs: number): string {
  const ago = (nowMs - unixMs) / 1000;
  return `${new Date(unixMs).toISOString()} (${ago >= 0 ? `${humanDuration(ago)} ago` : 'in the future'})`;
}
