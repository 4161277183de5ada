import { NodeState, type StatusReply } from '../../client/index.js';
import { REWRITE_PAYS_BELOW_FILL } from '../../store/page-fill.js';
import { formatToken } from './bytes-encoding.js';

const STATE_NAMES: Readonly<Record<number, string>> = {
  [NodeState.NODE_STATE_STARTING]: 'starting',
  [NodeState.NODE_STATE_SERVING]: 'serving',
  [NodeState.NODE_STATE_LAGGING]: 'lagging',
  [NodeState.NODE_STATE_STOPPING]: 'stopping',
};

/** A node state as operators say it (and /readyz and the docs do): `serving`, `lagging`, ... */
export function stateName(state: NodeState): string {
  return STATE_NAMES[state] ?? `unknown (${state})`;
}

/** `kvs2 status --output json`: the reply with names instead of enum numbers and null for "not known". */
export function statusObject(reply: StatusReply): Record<string, unknown> {
  return {
    state: stateName(reply.state),
    version: reply.version,
    log: { kind: reply.logKind, description: reply.logDescription },
    partitions: reply.partitions.map((p) => ({
      partition: p.partition,
      appliedOffset: p.appliedOffset,
      endOffset: p.endOffset < 0 ? null : p.endOffset,
      lagRecords: p.lagRecords < 0 ? null : p.lagRecords,
    })),
    keys: reply.keys,
    storeBytes: reply.storeBytes,
    storeLeafFill: reply.storeLeafFill > 0 ? reply.storeLeafFill : null,
    lastCaughtUp: reply.lastCaughtUpUnixMs > 0 ? new Date(reply.lastCaughtUpUnixMs).toISOString() : null,
    uptimeSeconds: reply.uptimeSeconds,
    token: formatToken(reply.token),
  };
}

/** How full the store's leaf pages are, and whether `kvs2 compact` would repack them. */
function pagesLine(fill: number): string {
  const percent = `${Math.round(fill * 100)}% as full as in key order`;
  return fill < REWRITE_PAYS_BELOW_FILL ? `${percent} (kvs2 compact on the stopped node would repack them)` : percent;
}

/** `kvs2 status`: aligned `name  value` lines, then a table of the partitions; `nowMs` dates "ago". */
export function statusLines(reply: StatusReply, nowMs: number): string[] {
  const lagKnown = reply.partitions.every((p) => p.lagRecords >= 0);
  const totalLag = reply.partitions.reduce((sum, p) => sum + Math.max(p.lagRecords, 0), 0);
  const fields: Array<[string, string]> = [
    ['state', stateName(reply.state)],
    ['version', reply.version],
    ['log', reply.logDescription.length > 0 ? `${reply.logKind} (${reply.logDescription})` : reply.logKind],
    [
      'lag',
      lagKnown ? `${totalLag} records` : `${totalLag}+ records (the log end of some partitions is not known yet)`,
    ],
    ['keys', String(reply.keys)],
    ['store size', `${humanBytes(reply.storeBytes)} (${reply.storeBytes} bytes)`],
    ...(reply.storeLeafFill > 0 ? [['store pages', pagesLine(reply.storeLeafFill)] as [string, string]] : []),
    ['last caught up', caughtUp(reply.lastCaughtUpUnixMs, nowMs)],
    ['uptime', humanDuration(reply.uptimeSeconds)],
    ['token', formatToken(reply.token)],
  ];
  const width = Math.max(...fields.map(([name]) => name.length)) + 2;
  const table = [
    ['partition', 'applied', 'end', 'lag'],
    ...reply.partitions.map((p) => [
      String(p.partition),
      String(p.appliedOffset),
      p.endOffset < 0 ? '?' : String(p.endOffset),
      p.lagRecords < 0 ? '?' : String(p.lagRecords),
    ]),
  ];
  const columns = (table[0] ?? []).map((_, column) => Math.max(...table.map((row) => (row[column] ?? '').length)));
  return [
    ...fields.map(([name, value]) => `${name.padEnd(width)}${value}`),
    '',
    ...table.map((row) =>
      row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd((columns[column] ?? 0) + 2))).join(''),
    ),
  ];
}

function caughtUp(unixMs: number, nowMs: number): string {
  if (unixMs <= 0) return 'never';
  const ago = Math.max(0, (nowMs - unixMs) / 1000);
  return `${new Date(unixMs).toISOString()} (${humanDuration(ago)} ago)`;
}

/** 1536 → "1.5 KiB". */
export function humanBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** 3723.4 → "1h 2m 3s"; under a minute, to the tenth of a second. */
export function humanDuration(seconds: number): string {
  if (seconds < 60) return `${Math.floor(seconds * 10) / 10}s`;
  const whole = Math.floor(seconds);
  const parts: string[] = [];
  const days = Math.floor(whole / 86_400);
  const hours = Math.floor((whole % 86_400) / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  if (days > 0) parts.push(`${days}d`);
  if (days > 0 || hours > 0) parts.push(`${hours}h`);
  parts.push(`${minutes}m`, `${whole % 60}s`);
  return parts.join(' ');
}
