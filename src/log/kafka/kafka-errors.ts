import { findErrorBy } from '@platformatic/kafka';
import { describeError } from '../../errors.js';

/**
 * Reading the library's errors. A failed call gives a tree (`MultipleErrors` of retries, of a response's
 * per-partition errors...) whose leaves carry `apiId` (the broker's error name, e.g. `NOT_LEADER_OR_FOLLOWER`)
 * or `code` `PLT_KFK_NETWORK`. We branch on those, never on message text.
 */

/** Broker error names meaning the topic we address is not (or no longer) the one that exists. */
export const TOPIC_GONE_ERRORS = ['UNKNOWN_TOPIC_ID', 'UNKNOWN_TOPIC_OR_PARTITION', 'INCONSISTENT_TOPIC_ID'] as const;

/** True when any error in the tree is the broker error `apiId` (for example `OFFSET_OUT_OF_RANGE`). */
export function hasBrokerError(error: unknown, ...apiIds: readonly string[]): boolean {
  return apiIds.some((apiId) => inTree(error, 'apiId', apiId));
}

/**
 * Whether any error in the tree has `property` equal to `value`, following both `errors` (MultipleErrors,
 * AggregateError) and `cause`. The library's own findErrorBy does not follow `cause`, and a failed SASL
 * handshake arrives as a retryable NetworkError whose cause is the AuthenticationError and, below it, the
 * broker's SASL_AUTHENTICATION_FAILED.
 */
function inTree(error: unknown, property: string, value: unknown, depth = 0): boolean {
  if (depth > 8 || !(error instanceof Error)) return false;
  if (Reflect.get(error, property) === value) return true;
  const nested = error instanceof AggregateError ? (error.errors as unknown[]) : [];
  return (
    nested.some((inner) => inTree(inner, property, value, depth + 1)) || inTree(error.cause, property, value, depth + 1)
  );
}

/**
 * True when the client's metadata step found no such topic. The library turns the broker's
 * UNKNOWN_TOPIC_OR_PARTITION there into a plain user error whose message is the only trace of it; a topic
 * deleted under a writer may be created again, so a send may wait for it like for any broker outage.
 */
export function isUnknownTopic(error: unknown): boolean {
  return (
    error instanceof Error &&
    findErrorBy(error, 'code', 'PLT_KFK_USER') !== null &&
    /^Unknown topic /.test(error.message)
  );
}

/** True when the client (or its connection pool) was closed: we are shutting down, not failing. */
export function isClientClosed(error: unknown): boolean {
  return error instanceof Error && findErrorBy(error, 'closed', true) !== null;
}

/**
 * One line naming every distinct cause in the tree: "Producing messages failed. (connect ECONNREFUSED
 * 127.0.0.1:9092; NOT_ENOUGH_REPLICAS)". The top message alone ("produce failed 4 times.") says too little.
 */
export function describeKafkaError(error: unknown): string {
  const causes = new Set<string>();
  collectCauses(error, causes, 0);
  const top = describeError(error);
  causes.delete(top);
  if (causes.size === 0) return top;
  const listed = [...causes].slice(0, 6).join('; ');
  return `${top} (${listed}${causes.size > 6 ? '; ...' : ''})`;
}

function collectCauses(error: unknown, causes: Set<string>, depth: number): void {
  if (depth > 8 || !(error instanceof Error)) return;
  const nested = error instanceof AggregateError ? (error.errors as unknown[]) : [];
  const apiId: unknown = Reflect.get(error, 'apiId');
  if (typeof apiId === 'string') causes.add(apiId);
  else if (nested.length === 0) causes.add(error.message);
  for (const inner of nested) collectCauses(inner, causes, depth + 1);
  if (error.cause !== undefined) collectCauses(error.cause, causes, depth + 1);
}

/**
 * Broker refusals that no retry changes: the cluster does not let this node in, rejects the topic it
 * asks for, or speaks no version of an API kvs2 needs.
 */
const PERMANENT_ERRORS = [
  'TOPIC_AUTHORIZATION_FAILED',
  'CLUSTER_AUTHORIZATION_FAILED',
  'TRANSACTIONAL_ID_AUTHORIZATION_FAILED',
  'SASL_AUTHENTICATION_FAILED',
  'UNSUPPORTED_SASL_MECHANISM',
  'UNSUPPORTED_VERSION',
  'INVALID_TOPIC_EXCEPTION',
  'INVALID_PARTITIONS',
  'INVALID_REPLICATION_FACTOR',
  'INVALID_CONFIG',
  'POLICY_VIOLATION',
] as const;
/** The library's own errors for the same: failed authentication, an API or feature the broker lacks. */
const PERMANENT_CLIENT_ERRORS = ['PLT_KFK_AUTHENTICATION', 'PLT_KFK_UNSUPPORTED_API', 'PLT_KFK_UNSUPPORTED'] as const;

/**
 * Node's codes for a broker certificate that does not verify against the CAs this node trusts (or does not
 * name the host it dialled): a configuration mismatch, which no retry fixes.
 */
const TLS_VERIFICATION_ERRORS = [
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
] as const;

/** True when retrying cannot help: the node should stop and say why instead of waiting. */
export function isPermanentKafkaError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return (
    hasBrokerError(error, ...PERMANENT_ERRORS) ||
    PERMANENT_CLIENT_ERRORS.some((code) => inTree(error, 'code', code)) ||
    TLS_VERIFICATION_ERRORS.some((code) => inTree(error, 'code', code))
  );
}
