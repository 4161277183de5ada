import { setTimeout as sleep } from 'node:timers/promises';
import { Consistency, type Kvs2Client, Kvs2ClientError } from '../../src/client/kvs2-client.js';
import { decodeToken } from '../../src/service/consistency-token.js';
import type { History, ReadOp, WriteOp } from './history.js';
import type { SeededRandom } from './random.js';

/** Statuses after which a write may or may not have been applied; every other error means it was not. */
const MAYBE_WRITTEN = new Set(['UNAVAILABLE', 'DEADLINE_EXCEEDED', 'CANCELLED', 'UNKNOWN', 'INTERNAL', 'ABORTED']);
const CALL_TIMEOUT_MS = 6000;

export interface WorkloadNode {
  readonly name: string;
  readonly client: Kvs2Client;
}

export interface WorkloadOptions {
  readonly nodes: readonly WorkloadNode[];
  readonly keys: readonly string[];
  readonly history: History;
  readonly stopped: () => boolean;
}

function describeError(error: unknown): { text: string; maybeWritten: boolean } {
  if (error instanceof Kvs2ClientError) {
    const status = error.kvs2Code.startsWith('GRPC_') ? error.kvs2Code.slice(5) : statusName(error.code);
    return { text: `${error.kvs2Code}: ${error.details}`, maybeWritten: MAYBE_WRITTEN.has(status) };
  }
  return { text: String(error), maybeWritten: true };
}

function statusName(code: number): string {
  const names = [
    'OK',
    'CANCELLED',
    'UNKNOWN',
    'INVALID_ARGUMENT',
    'DEADLINE_EXCEEDED',
    'NOT_FOUND',
    'ALREADY_EXISTS',
    'PERMISSION_DENIED',
    'RESOURCE_EXHAUSTED',
    'FAILED_PRECONDITION',
    'ABORTED',
    'OUT_OF_RANGE',
    'UNIMPLEMENTED',
    'INTERNAL',
    'UNAVAILABLE',
    'DATA_LOSS',
    'UNAUTHENTICATED',
  ];
  return names[code] ?? 'UNKNOWN';
}

function positionOf(token: Buffer): { partition: number; offset: number } {
  const offsets = [...decodeToken(token).offsets];
  const only = offsets[0];
  if (offsets.length !== 1 || only === undefined) throw new Error(`a write token names ${offsets.length} partitions`);
  // A token names the offset just past the record.
  return { partition: only[0], offset: only[1] - 1 };
}

/**
 * A writer: Sets and Writes of 1-4 mutations (now and then a delete) to random keys on random nodes,
 * each put with a value of its own, recording every outcome.
 */
export async function runWriter(name: string, random: SeededRandom, options: WorkloadOptions): Promise<void> {
  const { history, nodes, keys } = options;
  let seq = 0;
  while (!options.stopped()) {
    const node = random.pick(nodes);
    const invokedMs = history.now();
    const batch = random.chance(0.7)
      ? [{ key: random.pick(keys), del: false }]
      : random
          .shuffle(keys)
          .slice(0, random.int(1, 4))
          .map((key) => ({ key, del: random.chance(0.1) }));
    const ops: WriteOp[] = batch.map(({ key, del }) => ({
      id: history.writes.length,
      client: name,
      node: node.name,
      rpc: batch.length === 1 && !del ? 'Set' : 'Write',
      key,
      value: del ? null : `${name}-${seq++}`,
      invokedMs,
      completedMs: -1,
      outcome: 'unknown',
    }));
    for (const op of ops) history.writes.push(op);
    let backOff = false;
    try {
      const [single] = ops;
      if (ops.length === 1 && single?.rpc === 'Set' && single.value !== null) {
        const reply = await node.client.set(
          { key: Buffer.from(single.key), value: Buffer.from(single.value) },
          CALL_TIMEOUT_MS,
        );
        settleAcked(single, reply.token, history);
      } else {
        const reply = await node.client.write(
          {
            mutations: ops.map((op) => ({
              key: Buffer.from(op.key),
              value: op.value === null ? Buffer.alloc(0) : Buffer.from(op.value),
              delete: op.value === null,
            })),
          },
          CALL_TIMEOUT_MS,
        );
        ops.forEach((op, i) => {
          const result = reply.results[i];
          if (result !== undefined && result.code === 0) settleAcked(op, result.token, history);
          else {
            op.completedMs = history.now();
            // A mutation the log failed to take may still have reached it.
            op.outcome = 'unknown';
            op.error = `mutation code ${result?.code}: ${result?.message}`;
          }
        });
      }
    } catch (error) {
      const { text, maybeWritten } = describeError(error);
      for (const op of ops) {
        op.completedMs = history.now();
        op.outcome = maybeWritten ? 'unknown' : 'failed';
        op.error = text;
      }
      backOff = true;
    }
    // A node that is down refuses at once; do not spin on it.
    if (backOff) await sleep(random.int(20, 100));
  }
}

function settleAcked(op: WriteOp, token: Buffer, history: History): void {
  op.completedMs = history.now();
  op.outcome = 'ok';
  op.token = token;
  op.position = positionOf(token);
  history.acked(op);
}

/**
 * A reader: Gets and MultiGets on random nodes, each passing in `after` the last token this reader got
 * from any node and, often, the token of a recently acknowledged write of a key it reads.
 */
export async function runReader(name: string, random: SeededRandom, options: WorkloadOptions): Promise<void> {
  const { history, nodes, keys } = options;
  let chain: Buffer | undefined;
  while (!options.stopped()) {
    const node = random.pick(nodes);
    const count = random.chance(0.6) ? 1 : random.int(2, 4);
    const readKeys = random.shuffle(keys).slice(0, count);
    const after: Buffer[] = chain === undefined ? [] : [chain];
    let afterWrite: WriteOp | undefined;
    if (random.chance(0.4) && history.recentAcked.length > 0) {
      afterWrite = random.pick(history.recentAcked);
      if (!readKeys.includes(afterWrite.key)) readKeys[0] = afterWrite.key;
      if (afterWrite.token !== undefined) after.push(afterWrite.token);
    }
    const latest = random.chance(0.15);
    const merged = new Map<number, number>();
    for (const token of after) {
      for (const [partition, offset] of decodeToken(token).offsets) {
        merged.set(partition, Math.max(offset, merged.get(partition) ?? 0));
      }
    }
    const op: ReadOp = {
      id: history.reads.length,
      client: name,
      node: node.name,
      rpc: readKeys.length === 1 ? 'Get' : 'MultiGet',
      consistency: latest ? 'latest' : 'local',
      keys: readKeys,
      after: merged,
      ...(afterWrite === undefined ? {} : { afterWrite: afterWrite.id }),
      invokedMs: history.now(),
      completedMs: -1,
      ok: false,
    };
    history.reads.push(op);
    const consistency = latest ? Consistency.CONSISTENCY_LATEST : Consistency.CONSISTENCY_LOCAL;
    try {
      let token: Buffer;
      const [onlyKey] = readKeys;
      if (readKeys.length === 1 && onlyKey !== undefined) {
        const reply = await node.client.get({ key: Buffer.from(onlyKey), after, consistency }, CALL_TIMEOUT_MS);
        op.values = [reply.status === 0 ? reply.data.toString() : null];
        token = reply.token;
      } else {
        const reply = await node.client.multiGet(
          { keys: readKeys.map((key) => Buffer.from(key)), after, consistency },
          CALL_TIMEOUT_MS,
        );
        op.values = reply.parts.map((part) => (part.status === 0 ? part.data.toString() : null));
        token = reply.token;
      }
      op.completedMs = history.now();
      op.ok = true;
      op.replied = decodeToken(token).offsets;
      chain = token;
    } catch (error) {
      op.completedMs = history.now();
      op.error = describeError(error).text;
      await sleep(random.int(20, 100));
    }
  }
}
