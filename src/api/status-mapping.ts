import { Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { describeError, isKvs2Error, type Kvs2ErrorCode } from '../errors.js';

/** The one place where kvs2's error codes become gRPC status codes. */
const STATUS_OF: Readonly<Record<Kvs2ErrorCode, status>> = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  LOG_UNAVAILABLE: status.UNAVAILABLE,
  LOG_MISCONFIGURED: status.FAILED_PRECONDITION,
  LOG_RECREATED: status.UNAVAILABLE,
  LOG_OUTCOME_UNKNOWN: status.UNAVAILABLE,
  LOG_POSITION_LOST: status.UNAVAILABLE,
  TOKEN_FROM_OTHER_LOG: status.FAILED_PRECONDITION,
  WATCHER_TOO_SLOW: status.RESOURCE_EXHAUSTED,
  TOKEN_TOO_OLD: status.OUT_OF_RANGE,
  STORE_UNAVAILABLE: status.UNAVAILABLE,
  SHUTTING_DOWN: status.UNAVAILABLE,
  DEADLINE_EXCEEDED: status.DEADLINE_EXCEEDED,
  CANCELLED: status.CANCELLED,
  REPLY_TOO_LARGE: status.RESOURCE_EXHAUSTED,
  OVERLOADED: status.RESOURCE_EXHAUSTED,
  INCONSISTENT_STATE: status.INTERNAL,
  DATA_FORMAT_UNSUPPORTED: status.FAILED_PRECONDITION,
  SNAPSHOT_INVALID: status.DATA_LOSS,
  DATA_DIR_IN_USE: status.FAILED_PRECONDITION,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
};

/** Trailing metadata that carries the kvs2 error code, which several codes share a gRPC status with. */
export const ERROR_CODE_METADATA_KEY = 'kvs2-error-code';

export type StatusError = Partial<ServiceError> & { code: status; details: string };

/** A gRPC error for anything thrown below the API; unknown errors become INTERNAL. */
export function toStatusError(error: unknown): StatusError {
  if (isKvs2Error(error)) {
    const metadata = new Metadata();
    metadata.set(ERROR_CODE_METADATA_KEY, error.code);
    return { code: STATUS_OF[error.code], details: error.message, metadata };
  }
  return { code: status.INTERNAL, details: `internal error: ${describeError(error)}` };
}

/** The gRPC status code of a kvs2 error code (for per-mutation results, which carry no metadata). */
export function statusOf(code: Kvs2ErrorCode): status {
  return STATUS_OF[code];
}
