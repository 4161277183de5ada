import { Kvs2Error } from '../errors.js';
import {
  type Condition,
  ConditionKind,
  Consistency,
  NodeState,
  type ScanReply,
  type SetReply,
  type SetRequest,
  SetStatus,
  type StatusReply,
  type DeleteRequest as WireDeleteRequest,
  type WriteReply,
  type WriteRequest,
} from '../gen/kvs2.js';
import type { NodeStateName } from '../service/node-health.js';
import type { NodeStatus } from '../service/node-status.js';
import type {
  BatchRequest,
  BatchResult,
  DeleteRequest,
  PutRequest,
  ReadConsistency,
  ScanResult,
  WriteCondition,
  WriteResult,
  WriteStatus,
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

/** A wire Condition as the service knows it; unset (or CONDITION_NONE) is no condition. */
export function conditionOf(condition: Condition | undefined, field: string): WriteCondition | null {
  if (condition === undefined) return null;
  const { kind, version } = condition;
  if (kind === ConditionKind.CONDITION_VERSION) return { kind: 'version', version };
  if (version !== 0) {
    throw new Kvs2Error(
      'INVALID_ARGUMENT',
      `${field} gives version ${version} with kind ${kind}; a version is compared only with CONDITION_VERSION`,
    );
  }
  switch (kind) {
    case ConditionKind.CONDITION_NONE:
      return null;
    case ConditionKind.CONDITION_ABSENT:
      return { kind: 'absent' };
    case ConditionKind.CONDITION_PRESENT:
      return { kind: 'present' };
    default:
      throw new Kvs2Error('INVALID_ARGUMENT', `${field}.kind ${kind} is not a known ConditionKind value`);
  }
}

export function putRequestOf(request: SetRequest): PutRequest {
  const { key, value, waitForApply } = request;
  return { key, value, waitForApply, condition: conditionOf(request.condition, 'condition') };
}

export function deleteRequestOf(request: WireDeleteRequest): DeleteRequest {
  const { key, waitForApply } = request;
  return { key, waitForApply, condition: conditionOf(request.condition, 'condition') };
}

export function batchRequestOf(request: WriteRequest): BatchRequest {
  return {
    waitForApply: request.waitForApply,
    mutations: request.mutations.map(({ key, value, delete: isDelete, condition }, i) => ({
      key,
      value,
      delete: isDelete,
      condition: conditionOf(condition, `mutations[${i}].condition`),
    })),
  };
}

const SET_STATUS: Readonly<Record<WriteStatus, SetStatus>> = {
  published: SetStatus.PUBLISHED,
  applied: SetStatus.APPLIED,
  conflict: SetStatus.CONFLICT,
};

export function scanReplyOf(result: ScanResult): ScanReply {
  return {
    items: result.items.map((item) => ({ key: item.key, value: item.value ?? EMPTY, version: item.version })),
    continuation: result.continuation ?? EMPTY,
    token: result.token,
  };
}

export function writeReplyOf(result: WriteResult): SetReply {
  return { status: SET_STATUS[result.status], token: result.token, version: result.version };
}

export function batchReplyOf(result: BatchResult): WriteReply {
  const results = result.outcomes.map((outcome) => {
    if (outcome.ok) return { code: 0, message: '', token: outcome.token, version: outcome.version };
    const error = toStatusError(outcome.error);
    return { code: error.code, message: error.details, token: EMPTY, version: 0 };
  });
  return { results, token: result.token ?? EMPTY, status: SET_STATUS[result.status] };
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
    storeLeafFill: status.storeLeafFill ?? 0,
    lastCaughtUpUnixMs: status.lastCaughtUpAtMs ?? 0,
    token: status.token,
    uptimeSeconds: status.uptimeSeconds,
  };
}
