import { Metadata, type ServiceError, status } from '@grpc/grpc-js';

/**
 * The kvs2 error codes a server sends in the `kvs2-error-code` trailer: several share one gRPC status
 * (LOG_UNAVAILABLE, STORE_UNAVAILABLE and SHUTTING_DOWN are all UNAVAILABLE), and callers branch on these,
 * never on message text. Part of the wire contract: codes are only ever added.
 */
export const SERVER_ERROR_CODES = [
  'INVALID_ARGUMENT',
  'LOG_UNAVAILABLE',
  'LOG_RECREATED',
  'LOG_OUTCOME_UNKNOWN',
  'LOG_POSITION_LOST',
  'LOG_MISCONFIGURED',
  'TOKEN_FROM_OTHER_LOG',
  'WATCHER_TOO_SLOW',
  'TOKEN_TOO_OLD',
  'STORE_UNAVAILABLE',
  'DEADLINE_EXCEEDED',
  'CANCELLED',
  'SHUTTING_DOWN',
  'REPLY_TOO_LARGE',
  'OVERLOADED',
  'INCONSISTENT_STATE',
  'DATA_FORMAT_UNSUPPORTED',
  'SNAPSHOT_INVALID',
  'DATA_DIR_IN_USE',
  'UNAUTHENTICATED',
  'PERMISSION_DENIED',
] as const;

export type ServerErrorCode = (typeof SERVER_ERROR_CODES)[number];

/**
 * What failed, as a stable string: the server's kvs2 code when it sent one, else `GRPC_<STATUS>` for a
 * failure the server did not classify or that never reached it (a transport error, the client's own
 * deadline, a request over the server's size limit: GRPC_RESOURCE_EXHAUSTED).
 */
export type Kvs2ErrorCode = ServerErrorCode | `GRPC_${keyof typeof status}`;

export const ERROR_CODE_METADATA_KEY = 'kvs2-error-code';

/**
 * Every failed call rejects with this. It is a grpc-js ServiceError (`code` is the gRPC status number,
 * `details` the server's message) with `kvs2Code` added.
 */
export class Kvs2ClientError extends Error implements ServiceError {
  override readonly name = 'Kvs2ClientError';
  readonly code: status;
  readonly details: string;
  readonly metadata: Metadata;
  readonly kvs2Code: Kvs2ErrorCode;

  constructor(error: ServiceError) {
    super(error.message, { cause: error });
    this.code = error.code;
    this.details = error.details;
    this.metadata = error.metadata ?? new Metadata();
    this.kvs2Code = kvs2CodeOf(this.code, this.metadata);
  }
}

function kvs2CodeOf(code: status, metadata: Metadata): Kvs2ErrorCode {
  const [sent] = metadata.get(ERROR_CODE_METADATA_KEY);
  const known = SERVER_ERROR_CODES.find((candidate) => candidate === String(sent));
  if (known !== undefined) return known;
  const name = (Object.keys(status) as Array<keyof typeof status>).find((key) => status[key] === code);
  return `GRPC_${name ?? 'UNKNOWN'}`;
}
