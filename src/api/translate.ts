import { Kvs2Error } from '../errors.js';
import {
  Consistency,
  type GetReply,
  type MultiGetReply,
  type MultiGetResponsePart,
  NodeState,
  ReadStatus,
  type ScanReply,
  type SetReply,
  SetStatus,
  type StatusReply,
  type WriteReply,
} from '../gen/kvs2.js';
import type { NodeStateName } from '../service/node-health.js';
import type { NodeStatus } from '../service/node-status.js';
import type {
  BatchResult,
  GetResult,
  MultiGetResult,
  ReadConsistency,
  ScanResult,
  WriteResult,
} from '../service/requests.js';
import { toStatusError } from './status-mapping.js';

/**
 * Between the wire messages and the service's requests and results. No semantics here: only what a field
 * means in the other vocabulary.
 */

const EMPTY = Buffer.alloc(0);

const CONSISTENCY: ReadonlyMap<number, ReadConsistency> = new Map([
  [Consistency.CONSISTENCY_LOCAL, 'local'],
  [Consistency.CONSISTENCY_AT_LEAST, 'at-least'],
  [Consistency.CONSISTENCY_LATEST, 'latest'],
]);

/** The domain name of a Consistency value; a value this node does not know is refused. */
export function consistencyOf(value: Consistency): ReadConsistency {
  const consistency = CONSISTENCY.get(value);
  if (consistency === undefined) {
    throw new Kvs2Error('INVALID_ARGUMENT', `consistency ${value} is not a known Consistency value`);
  }
  return consistency;
}

export function getReplyOf(result: GetResult): GetReply {
  return result.value === undefined
    ? { status: ReadStatus.NOT_FOUND, data: EMPTY, token: result.token, version: 0 }
    : { status: ReadStatus.OK, data: result.value, token: result.token, version: result.version };
}

export function multiGetReplyOf(keys: readonly Buffer[], result: MultiGetResult): MultiGetReply {
  const { values, versions } = result;
  const parts: MultiGetResponsePart[] = new Array(keys.length);
  for (let i = 0; i < keys.length; i++) {
    const value = values[i];
    parts[i] =
      value === undefined
        ? { key: keys[i] as Buffer, status: ReadStatus.NOT_FOUND, data: EMPTY, version: 0 }
        : { key: keys[i] as Buffer, status: ReadStatus.OK, data: value, version: versions[i] ?? 0 };
  }
  return { parts, token: result.token };
}

export function scanReplyOf(result: ScanResult): ScanReply {
  return {
    items: result.items.map((item) => ({ key: item.key, value: item.value ?? EMPTY, version: item.version })),
    continuation: result.continuation ?? EMPTY,
    token: result.token,
  };
}

export function writeReplyOf(result: WriteResult): SetReply {
  return { status: SetStatus.PUBLISHED, token: result.token };
}

export function batchReplyOf(result: BatchResult): WriteReply {
  const results = result.outcomes.map((outcome) => {
    if (outcome.ok) return { code: 0, message: '', token: outcome.token };
    const error = toStatusError(outcome.error);
    return { code: error.code, message: error.details, token: EMPTY };
  });
  return { results, token: result.token ?? EMPTY };
}

const NODE_STATE: Readonly<Record<NodeStateName, NodeState>> = {
  starting: NodeState.NODE_STATE_STARTING,
  serving: NodeState.NODE_STATE_SERVING,
  lagging: NodeState.NODE_STATE_LAGGING,
  stopping: NodeState.NODE_STATE_STOPPING,
};

/** Unknown ends and lags are -1 on the wire, a time never reached is 0. */
export function statusReplyOf(status: NodeStatus): StatusReply {
  return {
    state: NODE_STATE[status.state],
    version: status.version,
    logKind: status.logKind,
    logDescription: status.logDescription,
    partitions: status.partitions.map((p) => ({
      partition: p.partition,
      appliedOffset: p.appliedOffset,
      endOffset: p.endOffset ?? -1,
      lagRecords: p.lagRecords ?? -1,
    })),
    keys: status.keys,
    storeBytes: status.storeBytes,
    lastCaughtUpUnixMs: status.lastCaughtUpAtMs ?? 0,
    token: status.token,
    uptimeSeconds: status.uptimeSeconds,
  };
}
