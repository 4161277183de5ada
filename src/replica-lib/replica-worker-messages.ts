/**
 * What the application's thread and the replica's worker thread (`applyOn: 'worker'`) tell each other,
 * beside what src/threads/ defines for any reader and owner of the log (the mirror of the replica, the
 * forwarded log requests): the replica's life (store open, started, caught up, progress, failure), its log
 * lines, and close.
 */
import type { LogLevel } from '../config/config.js';
import type { LogReply, LogRequest, MirrorMessage, WireError } from '../threads/thread-messages.js';
import type { ReplicaOptions } from './replica-api.js';

/**
 * What the worker starts from: the application's options that cross a thread (the logger and onFatal
 * stay on the application's thread; the worker's log lines and failure come back by message).
 */
export interface ReplicaWorkerData {
  readonly options: Omit<ReplicaOptions, 'logger' | 'onFatal' | 'applyOn'>;
  readonly logLevel: LogLevel;
}

/** Ends of the topic's partitions as last learnt, null until known. */
export type EndEntries = ReadonlyArray<readonly [number, number | null]>;

export type FromReplicaWorker =
  | MirrorMessage
  | LogReply
  /**
   * The store is open (and in the versioned format), so that the application's thread may open its
   * reader of the same environment; `identity`: the log the store was last applied from ('' if none).
   */
  | { readonly type: 'store-open'; readonly identity: string }
  /** The store could not be opened (bad options, a peer that cannot be bootstrapped from, ...). */
  | { readonly type: 'open-failed'; readonly error: WireError }
  /** The start-up loop ended: the replica reads the topic (`started`), or failed, or was stopped. */
  | { readonly type: 'start-ended'; readonly started: boolean }
  | { readonly type: 'caught-up'; readonly now: boolean }
  /** The topic's end as the replica last learnt it (about every second); applied offsets are the mirror's. */
  | { readonly type: 'progress'; readonly ends: EndEntries }
  /** The replica met a state it cannot repair (the option's onFatal). */
  | { readonly type: 'fatal'; readonly error: WireError }
  /** One of the worker's log lines (pino JSON), for the application's logger. */
  | { readonly type: 'log'; readonly line: string }
  /** Everything the worker opened is closed; it exits next. */
  | { readonly type: 'closed' };

export type ToReplicaWorker =
  | LogRequest
  /** Stop the replica (it first applies what the topic held, for up to 2 s), close everything, exit. */
  | { readonly type: 'close' };
