import { Kvs2Error } from '../errors.js';
import {
  Consistency,
  type GetReply,
  type MultiGetReply,
  type MultiGetResponsePart,
  ReadStatus,
  type ScanReply,
  type SetReply,
  SetStatus,
  type WriteReply,
} from '../gen/kvs2.js';
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
    ? { status: ReadStatus.NOT_FOUND, data: EMPTY, token: result.token }
    : { status: ReadStatus.OK, data: result.value, token: result.token };
}

export function multiGetReplyOf(keys: readonly Buffer[], result: MultiGetResult): MultiGetReply {
  const { values } = result;
  const parts: MultiGetResponsePart[] = new Array(keys.length);
  for (let i = 0; i < keys.length; i++) {
    const value = values[i];
    parts[i] =
      value === undefined
        ? { key: keys[i] as Buffer, status: ReadStatus.NOT_FOUND, data: EMPTY }
        : { key: keys[i] as Buffer, status: ReadStatus.OK, data: value };
  }
  return { parts, token: result.token };
}

export function scanReplyOf(result: ScanResult): ScanReply {
  return {
    items: result.items.map((item) => ({ key: item.key, value: item.value ?? EMPTY })),
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
