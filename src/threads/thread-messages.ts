/**
 * What a thread that owns the log (the log, the replica, the store's one writer) and a thread that reads
 * the same LMDB environment tell each other: the replica's progress, mirrored (MirrorMessage), and the log
 * requests the reading thread forwards with their replies (LogRequest, LogReply). Two users: a node and
 * its serving workers (cli/serve-workers/), and the in-process replica whose replica runs on a worker
 * thread (replica-lib/, `applyOn: 'worker'`): the same messages, the owner on the other side. Messages on
 * one port arrive in the order they were sent, which is what keeps the reader's view exact: an `applied`
 * message is sent only after its LMDB commit, and the reader reads it only after handling the message.
 */
import { Kvs2Error, type Kvs2ErrorCode } from '../errors.js';
import type { LogBatch, LogPosition } from '../log/log.js';
import type { Offsets } from '../offsets.js';
import type { ConditionalVerdict } from '../service/conditional-writes.js';
import type { NodeStateName } from '../service/node-health.js';
import type { WriteCondition } from '../service/requests.js';
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

export interface HealthState {
  readonly live: boolean;
  readonly state: NodeStateName;
}

/** The owner's replica and health, as the reading thread's ReplicaMirror takes them. */
export type MirrorMessage =
  /**
   * A batch is committed: reads may see it. Its records always come along (packed, one copy per reader):
   * a reader whose watches asked for them only after a batch went out could not get that batch back.
   */
  | { readonly type: 'applied'; readonly next: OffsetEntries; readonly records: PackedRecords }
  /**
   * The replica starts over from a store's offsets (at start, after a rebuild), without a batch; `identity`
   * is the log it reads now (an empty store has none saved yet).
   */
  | { readonly type: 'restart'; readonly identity: string }
  /** The store was thrown away for a rebuild from a new log. */
  | { readonly type: 'reset'; readonly reason: string }
  | { readonly type: 'health'; readonly health: HealthState };

const MIRROR_TYPES: ReadonlySet<string> = new Set(['applied', 'restart', 'reset', 'health']);

export function isMirrorMessage(message: { readonly type: string }): message is MirrorMessage {
  return MIRROR_TYPES.has(message.type);
}

/** The owner's answer to a request that failed, of any kind. */
export interface FailedReply {
  readonly type: 'failed';
  readonly id: number;
  readonly error: WireError;
}

/** The owner's answers to LogRequests. */
export type LogReply =
  | { readonly type: 'appended'; readonly id: number; readonly position: LogPosition }
  | { readonly type: 'written-if'; readonly id: number; readonly verdict: ConditionalVerdict }
  | { readonly type: 'end-offsets'; readonly id: number; readonly offsets: OffsetEntries }
  | { readonly type: 'history-batch'; readonly id: number; readonly batch: LogBatchMessage }
  | FailedReply;

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

/** What a reading thread asks of the log's owner (ForwardedLog sends them, LogRequests answers them). */
export type LogRequest =
  /** Key and value in ArrayBuffers of their own (see record-packing.ts). */
  | { readonly type: 'append'; readonly id: number; readonly key: Uint8Array; readonly value: Uint8Array | null }
  /** A conditional write, decided by the owner (it owns the log and the replica). */
  | { readonly type: 'write-if'; readonly id: number; readonly mutations: readonly ConditionalMutationMessage[] }
  | { readonly type: 'end-offsets'; readonly id: number }
  /** Reads the log from these offsets (a watch's replay); each batch waits for `history-next`. */
  | { readonly type: 'history'; readonly id: number; readonly from: OffsetEntries }
  | { readonly type: 'history-next'; readonly id: number }
  /** Gives up a request (append, end offsets, history) whose call ended: the owner aborts it. */
  | { readonly type: 'cancel'; readonly id: number };

const LOG_REQUEST_TYPES: ReadonlySet<string> = new Set([
  'append',
  'write-if',
  'end-offsets',
  'history',
  'history-next',
  'cancel',
]);

export function isLogRequest(message: { readonly type: string }): message is LogRequest {
  return LOG_REQUEST_TYPES.has(message.type);
}
