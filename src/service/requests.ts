import type { Kvs2Error } from '../errors.js';
import type { ScanPage } from '../store/store.js';

/**
 * The requests and results of KvService, in domain terms: what a caller asks for and gets, independent
 * of the wire. The api layer translates gRPC messages into these and back.
 */

export type ReadConsistency = 'local' | 'at-least' | 'latest';

/** How fresh a read must be: see README "Consistency". */
export interface ReadOptions {
  readonly consistency: ReadConsistency;
  /** Tokens of writes the read must see; several are merged. */
  readonly after: readonly Buffer[];
}

export interface GetRequest extends ReadOptions {
  readonly key: Buffer;
}

export interface MultiGetRequest extends ReadOptions {
  readonly keys: readonly Buffer[];
}

export interface ScanRequest extends ReadOptions {
  /** Keys starting with this; or, when empty, keys in [start, end) (an empty end: no upper bound). */
  readonly prefix: Buffer;
  readonly start: Buffer;
  readonly end: Buffer;
  /** Most keys in the page; 0 asks for the default. */
  readonly limit: number;
  readonly keysOnly: boolean;
  /** The last key of the previous page; empty for the first page. */
  readonly continuation: Buffer;
}

/**
 * What a conditional write requires of its key's state just before it in the log (compare-and-set). A
 * deleted key is absent, like one never written: nodes that did and did not see a since-compacted
 * tombstone agree.
 */
export type WriteCondition =
  /** The key exists with exactly this version (at least 1). */
  { readonly kind: 'version'; readonly version: number } | { readonly kind: 'absent' } | { readonly kind: 'present' };

export interface WriteOptions {
  /** Answer only once this node has applied the write. */
  readonly waitForApply: boolean;
}

export interface PutRequest extends WriteOptions {
  readonly key: Buffer;
  readonly value: Buffer;
  /** Absent or null: unconditional. */
  readonly condition?: WriteCondition | null;
}

export interface DeleteRequest extends WriteOptions {
  readonly key: Buffer;
  readonly condition?: WriteCondition | null;
}

/** One change of a batch as a caller gives it: a put of `value`, or a delete when `delete` is set. */
export interface MutationRequest {
  readonly key: Buffer;
  readonly value: Buffer;
  readonly delete: boolean;
  /** A batch with any condition is one conditional write: all of it or nothing. */
  readonly condition?: WriteCondition | null;
}

export interface BatchRequest extends WriteOptions {
  readonly mutations: readonly MutationRequest[];
}

export interface WatchRequest {
  /** Changes to this key only; or, when empty, to keys starting with `prefix` (empty: every key). */
  readonly key: Buffer;
  readonly prefix: Buffer;
  /** Start after the writes this token names; empty: start now. */
  readonly after: Buffer;
  /** How often to send a progress event when nothing else is sent; 0 asks for the default. */
  readonly progressIntervalMs: number;
}

/** One call as the service sees it: its deadline and cancellation, and its end. */
export interface CallContext {
  /** Aborts at the call's deadline or when it is cancelled. Read it only when the work must wait. */
  readonly signal: AbortSignal;
  /** Runs `release` once the call has ended (answered and sent, failed, or cancelled). */
  onEnd(release: () => void): void;
}

export interface GetResult {
  /** Undefined when the key does not exist. */
  readonly value: Buffer | undefined;
  /** The key's version: the log position of its last write (offset + 1 in its partition); 0 when absent. */
  readonly version: number;
  /** What this node had applied when it read. */
  readonly token: Buffer;
}

export interface MultiGetResult {
  /** One per requested key, in request order. */
  readonly values: ReadonlyArray<Buffer | undefined>;
  /** Each key's version, in request order (0 where absent). */
  readonly versions: readonly number[];
  readonly token: Buffer;
}

export interface ScanResult {
  /** Keys in order, each with its value (undefined when keys only) and version. */
  readonly items: ScanPage['items'];
  /** Where the next page starts; null when the range is done. */
  readonly continuation: Buffer | null;
  readonly token: Buffer;
}

/**
 * `published`: an unconditional write is in the log; `applied`: a conditional one's conditions held and it is
 * in the log; `conflict`: they did not, nothing was written.
 */
export type WriteStatus = 'published' | 'applied' | 'conflict';

export interface WriteResult {
  readonly status: WriteStatus;
  /** Where the write landed in the log; for a conflict, the position it was decided at. */
  readonly token: Buffer;
  /** The version the write gave the key (0 for a delete); for a conflict, the key's current version. */
  readonly version: number;
}

export type MutationOutcome =
  | { readonly ok: true; readonly token: Buffer; readonly version: number }
  | { readonly ok: false; readonly error: Kvs2Error };

export interface BatchResult {
  readonly status: WriteStatus;
  /** Each mutation's outcome, in request order. */
  readonly outcomes: readonly MutationOutcome[];
  /** All published mutations' positions in one token; null when nothing was published. */
  readonly token: Buffer | null;
}

/** A result now, or later when the call had to wait (a read barrier, a write). */
export type Answer<T> = T | Promise<T>;
