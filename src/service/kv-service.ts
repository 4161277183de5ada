import { raceAbort } from '../abort.js';
import type { Limits } from '../config/config.js';
import { abortError, Kvs2Error } from '../errors.js';
import type { LogPosition, Offsets } from '../log/log.js';
import type { KeyValueReader, ScanPage } from '../store/store.js';
import { encodeToken, logTagOf, mergeTokens } from './consistency-token.js';
import { type ScanRequestInput, scanRange } from './scan-range.js';

/** The write side the service needs: any log. */
export interface LogAppender {
  append(key: Buffer, value: Buffer | null, signal?: AbortSignal): Promise<LogPosition>;
  endOffsets(signal?: AbortSignal): Promise<Offsets>;
}

/** What the service needs of the replica: where it is, and a way to wait for it. */
export interface ReplicaView {
  readonly appliedOffsets: Offsets;
  /** Changes whenever appliedOffsets does, so derived values can be cached. */
  readonly appliedVersion: number;
  readonly logIdentity: string;
  waitFor(target: Offsets, signal: AbortSignal): Promise<void>;
}

export interface KvServiceOptions {
  readonly log: LogAppender;
  readonly store: KeyValueReader;
  readonly replica: ReplicaView;
  readonly limits: Limits;
}

export type ReadConsistency = 'local' | 'at-least' | 'latest';

export interface ReadOptions {
  readonly consistency: ReadConsistency;
  /** Tokens of writes the read must see. */
  readonly after: readonly Buffer[];
}

export interface WriteOptions {
  /** Resolve only once this node has applied the write. */
  readonly waitForApply: boolean;
}

/** A put (value) or a delete (value null). */
export interface Mutation {
  readonly key: Buffer;
  readonly value: Buffer | null;
}

export type MutationOutcome =
  | { readonly ok: true; readonly token: Buffer }
  | { readonly ok: false; readonly error: Kvs2Error };

/** What a Write did: each mutation's outcome in request order, and one token for all that were published. */
export interface WriteOutcome {
  readonly outcomes: MutationOutcome[];
  /** Null when nothing was published. */
  readonly token: Buffer | null;
}

/** Scan pages hold at most this much, whatever the limits allow: a client's default receive limit is 4 MiB. */
const SCAN_PAGE_MAX_BYTES = 4 * 1024 * 1024 - 64 * 1024;
const SCAN_DEFAULT_LIMIT = 1000;

/**
 * The operations of kvs2, independent of the wire: reads come from the local store, writes go to the log
 * (and reach the store through the replica, like everyone else's). Validates every input against the
 * configured limits and throws Kvs2Error.
 */
export class KvService {
  readonly #log: LogAppender;
  readonly #store: KeyValueReader;
  readonly #replica: ReplicaView;
  readonly #limits: Limits;
  #closed = false;
  #logTag: { identity: string; tag: Buffer } | undefined;
  #appliedToken: { version: number; identity: string; token: Buffer } | undefined;

  constructor(options: KvServiceOptions) {
    this.#log = options.log;
    this.#store = options.store;
    this.#replica = options.replica;
    this.#limits = options.limits;
  }

  /** True when a read with these options can be served at once, without waiting for the replica. */
  isLocalRead(options: ReadOptions): boolean {
    return options.consistency === 'local' && options.after.length === 0;
  }

  /**
   * Waits until this node has applied what the read options ask for: the writes named by the tokens and,
   * for 'latest', everything the log held when the call arrived. Bounded by the signal (the deadline).
   */
  async readBarrier(options: ReadOptions, signal: AbortSignal): Promise<void> {
    if (options.consistency === 'at-least' && options.after.length === 0) {
      throw new Kvs2Error('INVALID_ARGUMENT', 'CONSISTENCY_AT_LEAST needs at least one token in `after`');
    }
    const target = mergeTokens(options.after, this.#currentLogTag());
    if (options.consistency === 'latest') {
      const end = await raceAbort(this.#log.endOffsets(signal), signal, 'read barrier');
      for (const [partition, offset] of end) {
        if (offset > (target.get(partition) ?? 0)) target.set(partition, offset);
      }
    }
    if (target.size > 0) await this.#replica.waitFor(target, signal);
  }

  /** A token for what this node has applied now: hand it to another node to read no older state. */
  appliedToken(): Buffer {
    const version = this.#replica.appliedVersion;
    const identity = this.#replica.logIdentity;
    const cached = this.#appliedToken;
    if (cached !== undefined && cached.version === version && cached.identity === identity) return cached.token;
    const token = encodeToken(this.#currentLogTag(), this.#replica.appliedOffsets);
    this.#appliedToken = { version, identity, token };
    return token;
  }

  /** The value of a key, or undefined when the key does not exist. */
  get(key: Buffer): Buffer | undefined {
    this.#checkKey(key, 'key');
    return this.#store.get(key);
  }

  /** One answer per key, in request order (duplicates included). */
  getMany(keys: readonly Buffer[]): Array<Buffer | undefined> {
    const { maxReplyBytes } = this.#limits;
    this.#checkCount(keys.length, 'MultiGet', 'keys');
    for (let i = 0; i < keys.length; i++) this.#checkKey(keys[i] as Buffer, `keys[${i}]`);
    // Read key by key and stop as soon as the reply outgrows the limit, so that a request for many big
    // values never holds more than the limit in memory.
    const values: Array<Buffer | undefined> = new Array(keys.length);
    let replyBytes = 0;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i] as Buffer;
      const value = this.#store.get(key);
      values[i] = value;
      replyBytes += key.length + (value?.length ?? 0);
      if (replyBytes > maxReplyBytes) {
        throw new Kvs2Error(
          'REPLY_TOO_LARGE',
          `MultiGet reply would hold more than ${maxReplyBytes} bytes of keys and values (reached at keys[${i}]); ` +
            'ask for fewer keys per call',
        );
      }
    }
    return values;
  }

  /** One page of keys in byte order; `continuation` names where the next page starts, if any. */
  scan(request: ScanRequestInput): { page: ScanPage; continuation: Buffer | null } {
    const { maxKeyBytes, maxBatchKeys, maxReplyBytes } = this.#limits;
    const range = scanRange(request, maxKeyBytes);
    if (request.limit > maxBatchKeys) {
      throw new Kvs2Error('INVALID_ARGUMENT', `limit is ${request.limit}; at most ${maxBatchKeys} keys per page`);
    }
    const page = this.#store.scan({
      ...range,
      limit: request.limit === 0 ? Math.min(SCAN_DEFAULT_LIMIT, maxBatchKeys) : request.limit,
      maxBytes: Math.min(SCAN_PAGE_MAX_BYTES, maxReplyBytes),
      keysOnly: request.keysOnly,
    });
    const last = page.items.at(-1);
    return { page, continuation: page.more && last !== undefined ? last.key : null };
  }

  /** Publishes the value to the log; resolves once the log holds it durably (and, if asked, it is applied). */
  async set(key: Buffer, value: Buffer, options: WriteOptions, signal?: AbortSignal): Promise<Buffer> {
    this.#checkMutation({ key, value }, 'key');
    return this.#publish(key, value, options, signal);
  }

  /** Publishes a tombstone for the key. */
  async delete(key: Buffer, options: WriteOptions, signal?: AbortSignal): Promise<Buffer> {
    this.#checkKey(key, 'key');
    return this.#publish(key, null, options, signal);
  }

  /**
   * Publishes many mutations at once. All are validated first (one bad mutation rejects the call and
   * nothing is published); then each is appended and reports its own outcome, since the log gives no
   * atomicity across partitions. Appends issued together share produce requests. The call's deadline
   * and the wait for the replica apply to the batch as a whole (once, not once per mutation: a race per
   * mutation on the call's signal cost a Write of 100 ~5% of the node's CPU); if the call is aborted, it
   * fails as a whole and its mutations may or may not have been published.
   */
  async write(mutations: readonly Mutation[], options: WriteOptions, signal?: AbortSignal): Promise<WriteOutcome> {
    this.#checkCount(mutations.length, 'Write', 'mutations');
    mutations.forEach((mutation, i) => {
      this.#checkMutation(mutation, `mutations[${i}].key`);
    });
    this.#checkWritable(signal);
    type Appended =
      | { readonly ok: true; readonly position: LogPosition }
      | { readonly ok: false; readonly error: Kvs2Error };
    const appended = Promise.all(
      mutations.map((mutation) =>
        this.#log.append(mutation.key, mutation.value, signal).then(
          (position): Appended => ({ ok: true, position }),
          (error: unknown): Appended => ({
            ok: false,
            error: error instanceof Kvs2Error ? error : new Kvs2Error('LOG_UNAVAILABLE', String(error)),
          }),
        ),
      ),
    );
    const results = await raceAbort(appended, signal, 'write');
    const reached = new Map<number, number>();
    for (const result of results) {
      if (!result.ok) continue;
      const { partition, offset } = result.position;
      reached.set(partition, Math.max(reached.get(partition) ?? 0, offset + 1));
    }
    if (options.waitForApply) await this.#waitForApply(reached, signal);
    return {
      outcomes: results.map(
        (result): MutationOutcome => (result.ok ? { ok: true, token: this.#tokenFor(result.position) } : result),
      ),
      // From the positions themselves: merging the mutations' tokens would decode each of them again.
      token: reached.size > 0 ? encodeToken(this.#currentLogTag(), reached) : null,
    };
  }

  /** After close, writes fail with SHUTTING_DOWN; reads keep working until the store closes. */
  close(): void {
    this.#closed = true;
  }

  async #publish(
    key: Buffer,
    value: Buffer | null,
    options: WriteOptions,
    signal: AbortSignal | undefined,
  ): Promise<Buffer> {
    this.#checkWritable(signal);
    const position = await raceAbort(this.#log.append(key, value, signal), signal, 'write');
    if (options.waitForApply) await this.#waitForApply(new Map([[position.partition, position.offset + 1]]), signal);
    return this.#tokenFor(position);
  }

  #checkWritable(signal: AbortSignal | undefined): void {
    if (this.#closed) throw new Kvs2Error('SHUTTING_DOWN', 'the node is shutting down');
    if (signal?.aborted) throw abortError(signal, 'write');
  }

  #waitForApply(reached: Offsets, signal: AbortSignal | undefined): Promise<void> {
    return this.#replica.waitFor(reached, signal ?? AbortSignal.timeout(60_000));
  }

  /** The token of one published record: its partition read up to just past it. */
  #tokenFor(position: LogPosition): Buffer {
    return encodeToken(this.#currentLogTag(), new Map([[position.partition, position.offset + 1]]));
  }

  /** The tag of the log this node reads now, which tokens must carry. */
  currentLogTag(): Buffer {
    return this.#currentLogTag();
  }

  #currentLogTag(): Buffer {
    const identity = this.#replica.logIdentity;
    if (this.#logTag?.identity !== identity) this.#logTag = { identity, tag: logTagOf(identity) };
    return this.#logTag.tag;
  }

  #checkMutation(mutation: Mutation, what: string): void {
    this.#checkKey(mutation.key, what);
    if (mutation.value !== null && mutation.value.length > this.#limits.maxValueBytes) {
      throw new Kvs2Error(
        'INVALID_ARGUMENT',
        `${what === 'key' ? 'value' : what.replace(/\.key$/, '.value')} is ${mutation.value.length} bytes; ` +
          `at most ${this.#limits.maxValueBytes} are allowed`,
      );
    }
  }

  #checkCount(count: number, rpc: string, what: string): void {
    if (count > this.#limits.maxBatchKeys) {
      throw new Kvs2Error(
        'INVALID_ARGUMENT',
        `${rpc} asked for ${count} ${what}; at most ${this.#limits.maxBatchKeys} are allowed per call`,
      );
    }
  }

  #checkKey(key: Buffer, what: string): void {
    if (key.length === 0) throw new Kvs2Error('INVALID_ARGUMENT', `${what} is empty; keys must have at least one byte`);
    if (key.length > this.#limits.maxKeyBytes) {
      throw new Kvs2Error(
        'INVALID_ARGUMENT',
        `${what} is ${key.length} bytes; at most ${this.#limits.maxKeyBytes} are allowed`,
      );
    }
  }
}
