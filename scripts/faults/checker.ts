import type { History, ReadOp, WriteOp } from './history.js';
import type { LogRecord, LogSnapshot } from './log-snapshot.js';
import type { NodeCrash } from './node-process.js';

export type ViolationKind =
  | 'lost-write'
  | 'phantom-value'
  | 'failed-write-applied'
  | 'key-in-two-partitions'
  | 'real-time-order'
  | 'token-went-back'
  | 'stale-read'
  | 'node-differs'
  | 'node-crashed'
  | 'not-serving';

export interface Violation {
  readonly kind: ViolationKind;
  readonly message: string;
  readonly key?: string;
  readonly read?: ReadOp;
  readonly atMs?: number;
  /** The log offset of the key the violation is about, to show the key's history around it. */
  readonly offset?: number;
}

export interface CheckInput {
  readonly history: History;
  readonly log: LogSnapshot;
  /** Each node's full scan after the heal: key → value. */
  readonly nodeStates: ReadonlyMap<string, ReadonlyMap<string, string>>;
  readonly crashes: readonly NodeCrash[];
  /** Nodes that did not report SERVING after the heal, with what they reported. */
  readonly notServing: ReadonlyMap<string, string>;
}

export interface CheckResult {
  readonly violations: Violation[];
  /** Things worth knowing that break no guarantee kvs2 makes. */
  readonly notes: string[];
  readonly unknownLanded: number;
  readonly unknownNotLanded: number;
}

/** The log, indexed for the checks. */
class LogIndex {
  readonly byKey = new Map<string, LogRecord[]>();
  readonly byValue = new Map<string, LogRecord[]>();
  readonly at = new Map<string, LogRecord>();

  constructor(records: readonly LogRecord[]) {
    for (const record of records) {
      this.at.set(`${record.partition}:${record.offset}`, record);
      push(this.byKey, record.key, record);
      if (record.value !== null) push(this.byValue, record.value, record);
    }
    for (const list of this.byKey.values()) list.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
  }

  partitionOf(key: string): number | undefined {
    return this.byKey.get(key)?.[0]?.partition;
  }
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}

/**
 * Checks a run against the guarantees of README "Consistency" and "A cluster on Kafka", exactly: the
 * topic read straight from Kafka is the order of every write that landed, each node's state must be that
 * log materialised, every acknowledged write must sit in the log where its token says, and every read
 * must show the state of the log at or after the positions its tokens and its reply's token name.
 */
export function check(input: CheckInput): CheckResult {
  const { history, log } = input;
  const violations: Violation[] = [];
  const notes: string[] = [];
  const index = new LogIndex(log.records);
  const writesByValue = new Map<string, WriteOp>();
  for (const write of history.writes) if (write.value !== null) writesByValue.set(write.value, write);
  const writeAt = (record: LogRecord): WriteOp | undefined => {
    if (record.value !== null) return writesByValue.get(record.value);
    return history.writes.find(
      (w) => w.value === null && w.position?.partition === record.partition && w.position.offset === record.offset,
    );
  };

  for (const [key, records] of index.byKey) {
    const partitions = new Set(records.map((r) => r.partition));
    if (partitions.size > 1) {
      violations.push({
        kind: 'key-in-two-partitions',
        key,
        message: `${key} has records in partitions ${[...partitions]}`,
      });
    }
  }

  // Every acknowledged write is in the log at the position its token names.
  let compactedAway = 0;
  for (const write of history.writes) {
    if (write.outcome !== 'ok' || write.position === undefined) continue;
    const { partition, offset } = write.position;
    const record = index.at.get(`${partition}:${offset}`);
    if (record === undefined) {
      const later = (index.byKey.get(write.key) ?? []).some((r) => r.partition === partition && r.offset > offset);
      if (later) {
        compactedAway++;
        continue;
      }
      violations.push({
        kind: 'lost-write',
        key: write.key,
        atMs: write.completedMs,
        offset,
        message: `write #${write.id} (${describeWrite(write)}) was acknowledged at ${partition}:${offset}, which the log does not hold, and no later write of ${write.key} is there`,
      });
    } else if (record.key !== write.key || record.value !== write.value) {
      violations.push({
        kind: 'lost-write',
        key: write.key,
        atMs: write.completedMs,
        offset,
        message: `write #${write.id} (${describeWrite(write)}) was acknowledged at ${partition}:${offset}, where the log holds ${record.key}=${show(record.value)}`,
      });
    }
  }
  if (compactedAway > 0)
    notes.push(`${compactedAway} acknowledged records were compacted away behind later writes of their keys`);

  // Every record in the log is a write somebody made, and not one refused.
  let duplicated = 0;
  for (const record of log.records) {
    if (record.value === null) {
      const deletes = history.writes.filter((w) => w.key === record.key && w.value === null && w.outcome !== 'failed');
      if (deletes.length === 0) {
        violations.push({
          kind: 'phantom-value',
          key: record.key,
          message: `the log holds a delete of ${record.key} at ${record.partition}:${record.offset}, and nobody deleted it`,
        });
      }
      continue;
    }
    const write = writesByValue.get(record.value);
    if (write === undefined || write.key !== record.key) {
      violations.push({
        kind: 'phantom-value',
        key: record.key,
        message: `the log holds ${record.key}=${record.value} at ${record.partition}:${record.offset}, which nobody wrote to that key`,
      });
    } else if (write.outcome === 'failed') {
      violations.push({
        kind: 'failed-write-applied',
        key: record.key,
        atMs: write.completedMs,
        message: `write #${write.id} (${describeWrite(write)}) was refused (${write.error}) but the log holds it at ${record.partition}:${record.offset}`,
      });
    }
  }
  for (const [value, records] of index.byValue) {
    if (records.length > 1) {
      duplicated++;
      if (duplicated <= 5) {
        const [first] = records;
        const between = (index.byKey.get(first?.key ?? '') ?? []).filter(
          (r) => r.offset > (first?.offset ?? 0) && r.offset < (records.at(-1)?.offset ?? 0),
        );
        notes.push(
          `value ${value} of ${first?.key} is in the log ${records.length} times: ${records.map((r) => `${r.partition}:${r.offset}`)}; ` +
            `between them ${between.length === 0 ? 'no other write of the key' : between.map((r) => `${r.offset} ${show(r.value)}`).join(', ')}`,
        );
      }
    }
  }
  if (duplicated > 0) notes.push(`${duplicated} values were written to the log more than once`);

  let unknownLanded = 0;
  let unknownNotLanded = 0;
  for (const write of history.writes) {
    if (write.outcome !== 'unknown' || write.value === null) continue;
    if (index.byValue.has(write.value)) unknownLanded++;
    else unknownNotLanded++;
  }

  // The log's order of each key agrees with real time: a write acknowledged before another was invoked
  // comes first. A write whose outcome was unknown may land late (a request already on the wire): noted.
  let lateLandings = 0;
  for (const [key, records] of index.byKey) {
    let latestInvoked: WriteOp | undefined;
    // A second copy of a value counts as that write landing again: behind a newer write it undoes it.
    for (const record of records) {
      const write = writeAt(record);
      if (write === undefined) continue;
      if (latestInvoked !== undefined) {
        if (write.outcome === 'ok' && write.completedMs < latestInvoked.invokedMs) {
          violations.push({
            kind: 'real-time-order',
            key,
            atMs: write.completedMs,
            offset: record.offset,
            message: `write #${write.id} (${describeWrite(write)}) was acknowledged at ${write.completedMs} ms, before write #${latestInvoked.id} (${describeWrite(latestInvoked)}) was invoked at ${latestInvoked.invokedMs} ms, yet the log has it after that one`,
          });
        } else if (write.outcome === 'unknown' && write.completedMs < latestInvoked.invokedMs) {
          lateLandings++;
          if (lateLandings <= 5) {
            notes.push(
              `write #${write.id} (${describeWrite(write)}), answered ${write.error} at ${write.completedMs} ms, landed at ${record.partition}:${record.offset}, after write #${latestInvoked.id} invoked at ${latestInvoked.invokedMs} ms`,
            );
          }
        }
      }
      if (latestInvoked === undefined || write.invokedMs > latestInvoked.invokedMs) latestInvoked = write;
    }
  }
  if (lateLandings > 0)
    notes.push(
      `${lateLandings} writes landed after a later write of their key although their caller had been told they failed`,
    );

  // Reads: never older than the tokens passed, nor than the token replied, nor (latest) than what was acknowledged before.
  const ackedByKey = new Map<string, WriteOp[]>();
  for (const write of history.writes) if (write.outcome === 'ok') push(ackedByKey, write.key, write);
  for (const read of history.reads) {
    if (!read.ok || read.values === undefined || read.replied === undefined) continue;
    const replied = read.replied;
    for (const [partition, offset] of read.after) {
      if ((replied.get(partition) ?? 0) < offset) {
        violations.push({
          kind: 'token-went-back',
          read,
          atMs: read.completedMs,
          message: `read #${read.id} on ${read.node} passed a token at ${partition}:${offset} and got back one at ${partition}:${replied.get(partition) ?? 0}`,
        });
      }
    }
    read.keys.forEach((key, i) => {
      const observed = read.values?.[i] ?? null;
      const partition = index.partitionOf(key) ?? ackedByKey.get(key)?.[0]?.position?.partition;
      const records = index.byKey.get(key) ?? [];
      let floor: LogRecord | undefined;
      let why = '';
      if (partition !== undefined) {
        const reached = replied.get(partition) ?? 0;
        for (const record of records) if (record.offset < reached) floor = record;
        if (floor !== undefined) why = `its reply token names ${partition}:${reached}`;
      }
      if (read.consistency === 'latest') {
        for (const write of ackedByKey.get(key) ?? []) {
          if (write.completedMs >= read.invokedMs || write.position === undefined) continue;
          const record = index.at.get(`${write.position.partition}:${write.position.offset}`);
          if (record !== undefined && (floor === undefined || record.offset > floor.offset)) {
            floor = record;
            why = `CONSISTENCY_LATEST, and write #${write.id} was acknowledged at ${write.completedMs} ms`;
          }
        }
      }
      const stale = (message: string) =>
        violations.push({
          kind: 'stale-read',
          key,
          read,
          atMs: read.completedMs,
          message: `read #${read.id} of ${key} on ${read.node}: ${message}`,
        });
      if (observed !== null) {
        // Of a value the log holds twice, the later copy may be what the node shows.
        const record = index.byValue.get(observed)?.at(-1);
        if (record === undefined || record.key !== key) {
          stale(`answered ${JSON.stringify(observed)}, which the log does not hold for ${key}`);
        } else if (floor !== undefined && record.offset < floor.offset) {
          stale(
            `answered ${observed} (offset ${record.offset}), older than ${show(floor.value)} at ${floor.offset}; ${why}`,
          );
        }
      } else if (floor !== undefined && floor.value !== null) {
        const deletedSince = records.some((r) => r.value === null && r.offset > (floor?.offset ?? 0));
        if (!deletedSince)
          stale(`answered NOT_FOUND, but ${floor.value} is at ${floor.offset} and no delete follows; ${why}`);
      }
    });
  }

  // Every node holds exactly the log, materialised: so all nodes agree, and every acknowledged write's
  // key holds that write or a later one.
  const expected = new Map<string, string>();
  for (const [key, records] of index.byKey) {
    const last = records.at(-1);
    if (last?.value != null) expected.set(key, last.value);
  }
  for (const [node, state] of input.nodeStates) {
    const diffs: string[] = [];
    for (const key of new Set([...expected.keys(), ...state.keys()])) {
      const want = expected.get(key);
      const have = state.get(key);
      if (want !== have) diffs.push(`${key}: log ${show(want ?? null)}, node ${show(have ?? null)}`);
    }
    if (diffs.length > 0) {
      violations.push({
        kind: 'node-differs',
        key: diffs[0]?.split(':')[0] ?? '',
        message: `${node} differs from the log in ${diffs.length} keys: ${diffs.slice(0, 10).join('; ')}`,
      });
    }
  }

  for (const crash of input.crashes) {
    violations.push({
      kind: 'node-crashed',
      atMs: crash.atMs,
      message: `${crash.node} exited on its own at ${crash.atMs} ms (code ${crash.code}, signal ${crash.signal}); its last lines:\n    ${crash.tail.slice(-8).join('\n    ')}`,
    });
  }
  for (const [node, status] of input.notServing) {
    violations.push({ kind: 'not-serving', message: `${node} was not SERVING after the heal: ${status}` });
  }
  return { violations, notes, unknownLanded, unknownNotLanded };
}

export function describeWrite(write: WriteOp): string {
  const what = write.value === null ? `delete ${write.key}` : `${write.key}=${write.value}`;
  return `${write.rpc} ${what} by ${write.client} on ${write.node}, ${write.outcome}`;
}

function show(value: string | null): string {
  return value === null ? 'nothing' : value;
}
