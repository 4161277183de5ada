/**
 * The one error type of kvs2. Callers branch on `code`, never on message text; the API layer maps each
 * code to a gRPC status in one place (api/status-mapping.ts).
 */
export type Kvs2ErrorCode =
  /** The request is malformed or over a limit; retrying it unchanged will fail again. */
  | 'INVALID_ARGUMENT'
  /** The log (embedded or Kafka) could not take or serve a record. */
  | 'LOG_UNAVAILABLE'
  /**
   * The log refuses this node in a way retrying cannot fix (not authorized, a topic setting the cluster
   * rejects, a broker too old): the node stops instead of waiting.
   */
  | 'LOG_MISCONFIGURED'
  /**
   * A conditional write's commit was sent but its answer is unknown (a lost answer, a fenced producer, a
   * timeout); whoever wrote it learns the outcome by reading the log past the write's offset.
   */
  | 'LOG_OUTCOME_UNKNOWN'
  /** The log was deleted and recreated under a reader (Kafka: the topic id changed). */
  | 'LOG_RECREATED'
  /** A reader asked for records the log no longer has (removed by retention). */
  | 'LOG_POSITION_LOST'
  /** A consistency token names positions in another log than the one this node reads. */
  | 'TOKEN_FROM_OTHER_LOG'
  /** A watcher read too slowly and was cut off; it can resume from its last token. */
  | 'WATCHER_TOO_SLOW'
  /** The log no longer holds what a watch asked to start from. */
  | 'TOKEN_TOO_OLD'
  /** The local store could not be read or written. */
  | 'STORE_UNAVAILABLE'
  /** The call's deadline passed before the operation finished. */
  | 'DEADLINE_EXCEEDED'
  /** The caller went away. */
  | 'CANCELLED'
  /** The node is shutting down and takes no new work. */
  | 'SHUTTING_DOWN'
  /** The answer would be larger than the node is willing to build in memory. */
  | 'REPLY_TOO_LARGE'
  /** The node holds as many bytes of replies as it may; retrying later will work. */
  | 'OVERLOADED'
  /** The local store and the log disagree in a way the node cannot repair by itself. */
  | 'INCONSISTENT_STATE'
  /**
   * The data dir (the store or the embedded log) is in a format version this kvs2 cannot read, written by
   * a newer kvs2: the node refuses to start rather than misread it.
   */
  | 'DATA_FORMAT_UNSUPPORTED'
  /**
   * A snapshot (kvs2 snapshot save/restore, docs/snapshot-format.md) is damaged: cut short, corrupt, or not a
   * snapshot at all. Nothing was installed from it.
   */
  | 'SNAPSHOT_INVALID'
  /**
   * The data dir is in use in a way the operation would break: a node is running on it, or it holds a store
   * that a restore would replace without --force.
   */
  | 'DATA_DIR_IN_USE'
  /** The call carries no credentials the node accepts (--auth-file: no token, or an unknown one). */
  | 'UNAUTHENTICATED'
  /** The caller's identity may not do this to these keys (--auth-file's permissions). */
  | 'PERMISSION_DENIED';

export class Kvs2Error extends Error {
  override readonly name = 'Kvs2Error';

  constructor(
    readonly code: Kvs2ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isKvs2Error(error: unknown): error is Kvs2Error {
  return error instanceof Kvs2Error;
}

/** A short description of any thrown value, for messages that say what failed. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

/**
 * Turns an abort into the matching typed error: a deadline becomes DEADLINE_EXCEEDED, anything else
 * (the caller cancelled, the node is closing) keeps the reason if it is already ours.
 */
export function abortError(signal: AbortSignal, what: string): Kvs2Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Kvs2Error) return reason;
  if (reason instanceof DOMException && reason.name === 'TimeoutError') {
    return new Kvs2Error('DEADLINE_EXCEEDED', `${what}: deadline exceeded`);
  }
  return new Kvs2Error('CANCELLED', `${what}: cancelled`);
}
