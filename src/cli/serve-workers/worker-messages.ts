/**
 * What the node and its serving workers (threads that each run a gRPC server and a KvService over the same
 * LMDB environment) tell each other: the replica's progress and the log requests of src/threads/
 * (thread-messages.ts, shared with the in-process replica's worker), and what only serving needs here.
 */
import type { Limits } from '../../config/config.js';
import type { NodeStatus } from '../../service/node-status.js';
import type {
  FailedReply,
  HealthState,
  LogReply,
  LogRequest,
  MirrorMessage,
  WireError,
} from '../../threads/thread-messages.js';

/** What a worker needs to start: no Kafka settings, no secrets beyond the files it reads itself. */
export interface WorkerSettings {
  readonly index: number;
  readonly storeDir: string;
  readonly host: string;
  /** The port every worker binds (with SO_REUSEPORT); 0 for the first worker of a node on port 0. */
  readonly port: number;
  readonly limits: Limits;
  readonly maxRequestBytes: number;
  readonly maxReplyBytesInFlight: number;
  readonly requestTimeoutMs: number;
  readonly snapshotSendStallTimeoutMs: number;
  readonly tls: { readonly certFile: string; readonly keyFile: string; readonly clientCaFile: string | null } | null;
  readonly authFile: string | null;
  readonly logLevel: string;
  readonly metrics: boolean;
  /** The identity of the log the node's replica reads when the worker starts. */
  readonly identity: string;
  readonly health: HealthState;
}

/** The node's answers to a worker's requests: the log's, and its status. */
export type WorkerReply = LogReply | { readonly type: 'status'; readonly id: number; readonly status: NodeStatus };

export type ToWorker =
  | MirrorMessage
  | WorkerReply
  | FailedReply
  | { readonly type: 'metrics-request'; readonly id: number }
  | { readonly type: 'reload'; readonly id: number; readonly what: 'tls' | 'auth' }
  | { readonly type: 'shutdown'; readonly graceMs: number };

export type FromWorker =
  | LogRequest
  | { readonly type: 'listening'; readonly port: number }
  /** The worker could not start or failed for good. */
  | { readonly type: 'fatal'; readonly error: WireError }
  | { readonly type: 'status'; readonly id: number }
  | { readonly type: 'metrics'; readonly id: number; readonly metrics: unknown }
  | { readonly type: 'shutdown-done'; readonly graceful: boolean }
  /** Answers `reload`: the worker re-read the files (or kept what it had, and says why). */
  | { readonly type: 'reloaded'; readonly id: number; readonly error: WireError | null };
