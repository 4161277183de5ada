/**
 * What the node (the main thread: log, replica, the store's one writer) and its serving workers (threads
 * that each run a gRPC server and a KvService over the same LMDB environment) tell each other. Messages on
 * one port arrive in the order they were sent, which is what keeps a worker's view of the replica exact:
 * an `applied` message is sent only after its LMDB commit, and a worker reads only after handling it.
 */
import type { Limits } from '../../config/config.js';
import { Kvs2Error, type Kvs2ErrorCode } from '../../errors.js';
import type { LogBatch, LogPosition } from '../../log/log.js';
import type { Offsets } from '../../offsets.js';
import type { ConditionalVerdict } from '../../service/conditional-writes.js';
import type { NodeStateName } from '../../service/node-health.js';
import type { NodeStatus } from '../../service/node-status.js';
import type { WriteCondition } from '../../service/requests.js';
import { type PackedRecords, packRecords, unpackRecords } from './record-packing.js';

/** Offsets as they cross a thread: a Map would clone too, but entries are plainer to read in a trace. */
export type OffsetEntries = ReadonlyArray<readonly [number, number]>;

export function toEntries(offsets: Offsets): OffsetEntries {
  return [...offsets];
}

export function toOffsets(entries: OffsetEntries): Map<number, number> {
  return new Map(entries);
}

/** A Kvs2Error as it crosses a thread (a structured clone loses the class). */
export interface WireError {
  readonly code: Kvs2ErrorCode;
  readonly message: string;
}

export function toWireError(error: unknown): WireError {
  if (error instanceof Kvs2Error) return { code: error.code, message: error.message };
  return { code: 'STORE_UNAVAILABLE', message: error instanceof Error ? error.message : String(error) };
}

export function fromWireError(error: WireError): Kvs2Error {
  return new Kvs2Error(error.code, error.message);
}

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

export interface HealthState {
  readonly live: boolean;
  readonly state: NodeStateName;
}

export type ToWorker =
  /**
   * A batch is committed: reads may see it. Its records always come along (packed, one copy per worker):
   * a worker whose watches asked for them only after a batch went out could not get that batch back.
   */
  | { readonly type: 'applied'; readonly next: OffsetEntries; readonly records: PackedRecords }
  /**
   * The replica starts over from a store's offsets (at start, after a rebuild), without a batch; `identity`
   * is the log it reads now (an empty store has none saved yet).
   */
  | { readonly type: 'restart'; readonly identity: string }
  /** The store was thrown away for a rebuild from a new log. */
  | { readonly type: 'reset'; readonly reason: string }
  | { readonly type: 'health'; readonly health: HealthState }
  | { readonly type: 'appended'; readonly id: number; readonly position: LogPosition }
  | { readonly type: 'written-if'; readonly id: number; readonly verdict: ConditionalVerdict }
  | { readonly type: 'end-offsets'; readonly id: number; readonly offsets: OffsetEntries }
  | { readonly type: 'history-batch'; readonly id: number; readonly batch: LogBatchMessage }
  | { readonly type: 'status'; readonly id: number; readonly status: NodeStatus }
  | { readonly type: 'failed'; readonly id: number; readonly error: WireError }
  | { readonly type: 'metrics-request'; readonly id: number }
  | { readonly type: 'reload'; readonly id: number; readonly what: 'tls' | 'auth' }
  | { readonly type: 'shutdown'; readonly graceMs: number };

export interface LogBatchMessage {
  readonly records: PackedRecords;
  readonly next: OffsetEntries;
}

export function toBatchMessage(batch: LogBatch): LogBatchMessage {
  return { records: packRecords(batch.records), next: toEntries(batch.nextOffsets) };
}

export function fromBatchMessage(message: LogBatchMessage): LogBatch {
  return { records: unpackRecords(message.records), nextOffsets: toOffsets(message.next) };
}

/** Key and value in ArrayBuffers of their own (see record-packing.ts). */
export interface ConditionalMutationMessage {
  readonly key: Uint8Array;
  readonly value: Uint8Array | null;
  readonly condition: WriteCondition | null;
}

export type FromWorker =
  | { readonly type: 'listening'; readonly port: number }
  /** The worker could not start or failed for good. */
  | { readonly type: 'fatal'; readonly error: WireError }
  /** Key and value in ArrayBuffers of their own (see record-packing.ts). */
  | { readonly type: 'append'; readonly id: number; readonly key: Uint8Array; readonly value: Uint8Array | null }
  /** A conditional write, decided by the node (it owns the log and the replica). */
  | { readonly type: 'write-if'; readonly id: number; readonly mutations: readonly ConditionalMutationMessage[] }
  | { readonly type: 'end-offsets'; readonly id: number }
  /** Reads the log from these offsets (a watch's replay); each batch waits for `history-next`. */
  | { readonly type: 'history'; readonly id: number; readonly from: OffsetEntries }
  | { readonly type: 'history-next'; readonly id: number }
  | { readonly type: 'status'; readonly id: number }
  /** Gives up a request (append, end offsets, history) whose call ended: the node aborts it. */
  | { readonly type: 'cancel'; readonly id: number }
  | { readonly type: 'metrics'; readonly id: number; readonly metrics: unknown }
  | { readonly type: 'shutdown-done'; readonly graceful: boolean }
  /** Answers `reload`: the worker re-read the files (or kept what it had, and says why). */
  | { readonly type: 'reloaded'; readonly id: number; readonly error: WireError | null };
