import type { Limits } from '../config/config.js';
import { abortError, Kvs2Error } from '../errors.js';
import type { LogPosition } from '../log/log.js';
import { hasReached, type Offsets } from '../offsets.js';
import type { AppliedWatermark } from '../replica/applied-watermark.js';
import { SnapshotEncoder } from '../snapshot/snapshot-encoder.js';
import { StoreImage } from '../snapshot/store-image.js';
import type { KeyValueReader } from '../store/store.js';
import type { SnapshotSource, StoreFileSource } from '../store/store-snapshot.js';
import type { ConditionalMutation, ConditionalVerdict, ConditionalWriter } from './conditional-writes.js';
import { encodeToken, logTagOf, mergeTokens } from './consistency-token.js';
import { ReplyBudget } from './reply-budget.js';
import { RequestChecks } from './request-checks.js';
import type {
  Answer,
  BatchRequest,
  BatchResult,
  CallContext,
  DeleteRequest,
  GetRequest,
  GetResult,
  MultiGetRequest,
  MultiGetResult,
  MutationOutcome,
  PutRequest,
  ReadOptions,
  ScanRequest,
  ScanResult,
  WatchRequest,
  WriteCondition,
  WriteResult,
} from './requests.js';
import { scanBounds } from './scan-range.js';
import { type ChangeSource, WatchSession } from './watch-session.js';

/** The write side the service needs: any log. Appends and offset queries honour the call's signal. */
export interface LogAppender {
  append(key: Buffer, value: Buffer | null, signal: AbortSignal): Promise<LogPosition>;
  endOffsets(signal: AbortSignal): Promise<Offsets>;
}

export interface KvServiceOptions {
  readonly log: LogAppender;
  /** Where conditional writes are decided (on the node that owns the log and the replica). */
  readonly conditional: ConditionalWriter;
  /** Reads, and consistent snapshots and copies of the whole store (the Snapshot RPC). */
  readonly store: KeyValueReader & SnapshotSource & StoreFileSource;
  /** Where the replica is, and a way to wait for it. */
  readonly applied: AppliedWatermark;
  /** What watches follow. */
  readonly changes: ChangeSource;
  readonly limits: Limits;
  /** Bytes of replies all calls in flight may hold together. */
  readonly maxReplyBytesInFlight: number;
}

/** Scan pages hold at most this much, whatever the limits allow: a client's default receive limit is 4 MiB. */
const SCAN_PAGE_MAX_BYTES = 4 * 1024 * 1024 - 64 * 1024;
const SCAN_DEFAULT_LIMIT = 1000;
/** What a read call holds besides its keys and values (framing, token, objects), charged to the budget. */
const CALL_OVERHEAD_BYTES = 1024;
const WATCH_DEFAULT_PROGRESS_MS = 5000;
const WATCH_MIN_PROGRESS_MS = 100;
const WATCH_MAX_PROGRESS_MS = 3_600_000;
/** A watcher may fall this far behind the live changes before it is cut off. */
const WATCH_MAX_QUEUED_EVENTS = 10_000;
const WATCH_MAX_QUEUED_BYTES = 16 * 1024 * 1024;
/**
 * How long a snapshot waits for the replica to apply what the log held when it was asked for. A node that
 * is further behind (or whose log cannot say where it ends) gives a snapshot of what it holds, dated by its
 * store's saved catch-up time.
 */
const SNAPSHOT_CATCH_UP_WAIT_MS = 5_000;
/** Snapshot chunks are never larger: 1 MiB, or --max-reply-bytes when that is less (gRPC's send limit). */
const SNAPSHOT_MAX_CHUNK_BYTES = 1024 * 1024;

/**
 * The operations of kvs2, independent of the wire, and the one owner of their semantics: it validates
 * every request, decides how fresh a read must be and waits for that (a local read stays synchronous, with
 * no timer or promise), and publishes writes to the log. Reads come from the local store; writes reach it
 * through the replica, like everyone else's. Fails with Kvs2Error.
 */
export class KvService {
  readonly #log: LogAppender;
  readonly #conditional: ConditionalWriter;
  readonly #store: KeyValueReader & SnapshotSource & StoreFileSource;
  readonly #applied: AppliedWatermark;
  readonly #changes: ChangeSource;
  readonly #limits: Limits;
  readonly #checks: RequestChecks;
  readonly #replyBudget: ReplyBudget;
  #closed = false;
  #logTag: { identity: string; tag: Buffer } | undefined;
  #appliedToken: { version: number; identity: string; token: Buffer } | undefined;

  constructor(options: KvServiceOptions) {
    this.#log = options.log;
    this.#conditional = options.conditional;
    this.#store = options.store;
    this.#applied = options.applied;
    this.#changes = options.changes;
    this.#limits = options.limits;
    this.#checks = new RequestChecks(options.limits);
    this.#replyBudget = new ReplyBudget(options.maxReplyBytesInFlight);
  }

  get(request: GetRequest, context: CallContext): Answer<GetResult> {
    this.#checks.key(request.key, 'key');
    return this.#read(request, context, () => {
      const value = this.#store.get(request.key);
      const version = this.#store.lastVersion;
      const bytes = request.key.length + (value?.length ?? 0);
      this.#checkReplySize(bytes, 'Get');
      this.#hold(context, bytes);
      return { value, version, token: this.appliedToken() };
    });
  }

  /** One answer per key, in request order (duplicates included). */
  multiGet(request: MultiGetRequest, context: CallContext): Answer<MultiGetResult> {
    const { keys } = request;
    this.#checks.count(keys.length, 'MultiGet', 'keys');
    for (let i = 0; i < keys.length; i++) this.#checks.key(keys[i] as Buffer, `keys[${i}]`);
    return this.#read(request, context, () => {
      const versions: number[] = new Array(keys.length);
      return { values: this.#readMany(keys, versions, context), versions, token: this.appliedToken() };
    });
  }

  /** One page of keys in byte order; `continuation` names where the next page starts, if any. */
  scan(request: ScanRequest, context: CallContext): Answer<ScanResult> {
    this.#checks.keyBound(request.prefix, 'prefix');
    this.#checks.keyBound(request.start, 'start');
    this.#checks.keyBound(request.end, 'end');
    this.#checks.storedKey(request.continuation, 'continuation');
    this.#checks.pageLimit(request.limit);
    const bounds = scanBounds(request);
    const { maxBatchKeys, maxReplyBytes } = this.#limits;
    return this.#read(request, context, () => {
      // Under memory pressure pages get smaller before reads are shed: a page is valid at any size.
      const room = this.#replyBudget.available - CALL_OVERHEAD_BYTES;
      if (room <= 0) throw this.#replyBudget.overloaded(CALL_OVERHEAD_BYTES);
      const page = this.#store.scan({
        ...bounds,
        limit: request.limit === 0 ? Math.min(SCAN_DEFAULT_LIMIT, maxBatchKeys) : request.limit,
        maxBytes: Math.min(SCAN_PAGE_MAX_BYTES, maxReplyBytes, room),
        keysOnly: request.keysOnly,
      });
      let pageBytes = 0;
      for (const item of page.items) pageBytes += item.key.length + (item.value?.length ?? 0);
      // A page takes its first item whatever its size: one the reply limit cannot hold is refused.
      this.#checkReplySize(pageBytes, 'Scan');
      this.#hold(context, pageBytes);
      const last = page.items.at(-1);
      return {
        items: page.items,
        continuation: page.more && last !== undefined ? last.key : null,
        token: this.appliedToken(),
      };
    });
  }

  /** Publishes the value; resolves once the log holds it durably (and, if asked, this node applied it). */
  set(request: PutRequest, context: CallContext): Promise<WriteResult> {
    this.#checks.key(request.key, 'key');
    this.#checks.value(request.value, 'value');
    if (request.condition)
      return this.#writeOneIf(request.key, request.value, request.condition, request, context.signal);
    return this.#publish(request.key, request.value, request.waitForApply, context.signal);
  }

  /** Publishes a tombstone for the key. */
  delete(request: DeleteRequest, context: CallContext): Promise<WriteResult> {
    this.#checks.key(request.key, 'key');
    if (request.condition) return this.#writeOneIf(request.key, null, request.condition, request, context.signal);
    return this.#publish(request.key, null, request.waitForApply, context.signal);
  }

  /**
   * Publishes many mutations at once. All are validated first (one bad mutation rejects the call and
   * nothing is published); then each is appended and reports its own outcome, since the log gives no
   * atomicity across partitions. Appends issued together share produce requests. If the call's deadline
   * passes or it is cancelled, it fails as a whole: its mutations may or may not have been published.
   */
  async write(request: BatchRequest, context: CallContext): Promise<BatchResult> {
    this.#checks.mutations(request.mutations);
    const { signal } = context;
    if (request.mutations.some(({ condition }) => condition)) return this.#writeBatchIf(request, signal);
    this.#checkWritable(signal);
    type Appended =
      | { readonly ok: true; readonly position: LogPosition }
      | { readonly ok: false; readonly error: Kvs2Error };
    const results = await Promise.all(
      request.mutations.map((mutation) =>
        this.#log.append(mutation.key, mutation.delete ? null : mutation.value, signal).then(
          (position): Appended => ({ ok: true, position }),
          (error: unknown): Appended => ({
            ok: false,
            error: error instanceof Kvs2Error ? error : new Kvs2Error('LOG_UNAVAILABLE', String(error)),
          }),
        ),
      ),
    );
    if (signal.aborted) throw abortError(signal, 'write');
    const reached = new Map<number, number>();
    for (const result of results) {
      if (!result.ok) continue;
      const { partition, offset } = result.position;
      reached.set(partition, Math.max(reached.get(partition) ?? 0, offset + 1));
    }
    if (request.waitForApply) await this.#applied.waitFor(reached, signal);
    const tag = await this.#writeTag(signal);
    return {
      status: 'published',
      outcomes: results.map(
        (result, i): MutationOutcome =>
          result.ok
            ? {
                ok: true,
                token: tokenAfter(tag, result.position),
                version: request.mutations[i]?.delete ? 0 : result.position.offset + 1,
              }
            : result,
      ),
      // From the positions themselves: merging the mutations' tokens would decode each of them again.
      token: reached.size > 0 ? encodeToken(tag, reached) : null,
    };
  }

  /**
   * Starts a watch: the changes to a key or prefix, from now or from a token, until the signal aborts.
   * The session is the caller's to read and to close.
   */
  watch(request: WatchRequest, signal: AbortSignal): WatchSession {
    this.#checks.watch(request);
    const interval = request.progressIntervalMs;
    return new WatchSession({
      source: this.#changes,
      logTag: this.currentLogTag(),
      key: request.key,
      prefix: request.prefix,
      after: request.after.length === 0 ? null : request.after,
      progressIntervalMs:
        interval === 0
          ? WATCH_DEFAULT_PROGRESS_MS
          : Math.min(WATCH_MAX_PROGRESS_MS, Math.max(WATCH_MIN_PROGRESS_MS, interval)),
      maxQueuedEvents: WATCH_MAX_QUEUED_EVENTS,
      maxQueuedBytes: WATCH_MAX_QUEUED_BYTES,
      signal,
    });
  }

  /**
   * A consistent snapshot of the whole store, encoded (docs/snapshot-format.md): the caller streams it and
   * must close it (it holds an LMDB read transaction). Like a 'latest' read it first waits, for at most
   * SNAPSHOT_CATCH_UP_WAIT_MS, until the replica has applied what the log held when the call came: the
   * snapshot then holds every write acknowledged before it began, and its caughtUpAt is that moment. The
   * store's own caughtUpAt may be far older: the replica saves one only every progress interval and only
   * when it finds no lag at all, and a node bootstrapping from the snapshot would take that older time for
   * the age of the snapshot (and refuse it against the topic's delete.retention.ms).
   */
  async snapshot(signal: AbortSignal): Promise<SnapshotEncoder> {
    const { identity, askedAt, end } = await this.#catchUpForSnapshot(signal);
    const snapshot = this.#store.snapshot();
    // Its offsets come from the same read transaction as its entries; the end was asked of the log the
    // replica read then. Both the same log and every partition reached: every write before askedAt is in it.
    const caughtUp =
      end !== null &&
      snapshot.progress.logIdentity === identity &&
      this.#applied.logIdentity === identity &&
      hasReached(snapshot.progress.appliedOffsets, end);
    return new SnapshotEncoder(snapshot, {
      maxChunkBytes: Math.min(SNAPSHOT_MAX_CHUNK_BYTES, this.#limits.maxReplyBytes),
      ...(caughtUp ? { caughtUpAt: askedAt } : {}),
    });
  }

  /**
   * A store image (snapshot/store-image.ts): a compacted copy of the store's file, for a new node of the
   * same kvs2 to install as its store. Waits for the replica as snapshot() does, for the same reason; the
   * copy records the time asked as its catch-up time if its offsets reach the log's end then. The caller
   * streams it and must close it (it removes the copy).
   */
  async storeImage(signal: AbortSignal): Promise<StoreImage> {
    const { identity, askedAt, end } = await this.#catchUpForSnapshot(signal);
    return StoreImage.take(this.#store, {
      maxChunkBytes: Math.min(SNAPSHOT_MAX_CHUNK_BYTES, this.#limits.maxReplyBytes),
      ...(end === null || this.#applied.logIdentity !== identity ? {} : { caughtUp: { at: askedAt, end, identity } }),
    });
  }

  /**
   * Waits, for at most SNAPSHOT_CATCH_UP_WAIT_MS, until the replica has applied what the log held now:
   * returns that end (null when not reached in time, or the log could not say) with the log and the time.
   */
  async #catchUpForSnapshot(
    signal: AbortSignal,
  ): Promise<{ readonly identity: string; readonly askedAt: number; readonly end: Offsets | null }> {
    this.#checkOpen(signal, 'snapshot');
    const identity = this.#applied.logIdentity;
    const askedAt = Date.now();
    let end: Offsets | null = null;
    const bounded = AbortSignal.any([signal, AbortSignal.timeout(SNAPSHOT_CATCH_UP_WAIT_MS)]);
    try {
      const target = await this.#log.endOffsets(bounded);
      await this.#applied.waitFor(target, bounded);
      end = target;
    } catch {
      if (signal.aborted) throw abortError(signal, 'snapshot');
      // Behind the log, or the log cannot say where it ends (or was replaced meanwhile): a snapshot of what
      // this node holds, as old as its store says.
    }
    this.#checkOpen(signal, 'snapshot');
    return { identity, askedAt, end };
  }

  /** A token for what this node has applied now: hand it to another node to read no older state. */
  appliedToken(): Buffer {
    const version = this.#applied.appliedVersion;
    const identity = this.#applied.logIdentity;
    const cached = this.#appliedToken;
    if (cached !== undefined && cached.version === version && cached.identity === identity) return cached.token;
    const token = encodeToken(this.currentLogTag(), this.#applied.appliedOffsets);
    this.#appliedToken = { version, identity, token };
    return token;
  }

  /** The tag of the log this node reads now, which tokens must carry. */
  currentLogTag(): Buffer {
    const identity = this.#applied.logIdentity;
    if (this.#logTag?.identity !== identity) this.#logTag = { identity, tag: logTagOf(identity) };
    return this.#logTag.tag;
  }

  /** After close, writes and new snapshots fail with SHUTTING_DOWN; reads keep working until the store closes. */
  close(): void {
    this.#closed = true;
  }

  /**
   * Runs `read` at once for a local read (the seed's path: synchronous, no timers), or after the node has
   * applied what the options ask for: the writes their tokens name and, for 'latest', everything the log
   * held when the call arrived. Tokens given with the local mode are honoured too: a client that passes
   * them wants them seen.
   */
  #read<T>(options: ReadOptions, context: CallContext, read: () => T): Answer<T> {
    this.#checks.readOptions(options);
    if (options.consistency === 'local' && options.after.length === 0) return read();
    const target = mergeTokens(options.after, this.currentLogTag());
    return this.#barrier(options.consistency === 'latest', target, context.signal).then(read);
  }

  async #barrier(latest: boolean, target: Map<number, number>, signal: AbortSignal): Promise<void> {
    if (latest) {
      for (const [partition, offset] of await this.#log.endOffsets(signal)) {
        if (offset > (target.get(partition) ?? 0)) target.set(partition, offset);
      }
    }
    if (target.size > 0) await this.#applied.waitFor(target, signal);
  }

  /**
   * A value another producer wrote may be larger than any this node accepts: a reply that would hold more
   * than --max-reply-bytes is refused rather than built.
   */
  #checkReplySize(bytes: number, rpc: string): void {
    const { maxReplyBytes } = this.#limits;
    if (bytes > maxReplyBytes) {
      throw new Kvs2Error(
        'REPLY_TOO_LARGE',
        `${rpc} reply would hold ${bytes} bytes of keys and values, more than --max-reply-bytes (${maxReplyBytes})`,
      );
    }
  }

  /** Takes a reply's bytes from the budget until the call ends; OVERLOADED when they do not fit. */
  #hold(context: CallContext, bytes: number): void {
    const held = bytes + CALL_OVERHEAD_BYTES;
    this.#replyBudget.take(held);
    context.onEnd(() => this.#replyBudget.release(held));
  }

  /**
   * Reads key by key and stops as soon as the reply outgrows its limit or what the budget has left, never
   * holding more than that.
   */
  #readMany(keys: readonly Buffer[], versions: number[], context: CallContext): Array<Buffer | undefined> {
    const { maxReplyBytes } = this.#limits;
    const room = this.#replyBudget.available - CALL_OVERHEAD_BYTES;
    const values: Array<Buffer | undefined> = new Array(keys.length);
    let replyBytes = 0;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i] as Buffer;
      const value = this.#store.get(key);
      values[i] = value;
      versions[i] = this.#store.lastVersion;
      replyBytes += key.length + (value?.length ?? 0);
      if (replyBytes > maxReplyBytes) {
        throw new Kvs2Error(
          'REPLY_TOO_LARGE',
          `MultiGet reply would hold more than ${maxReplyBytes} bytes of keys and values (reached at keys[${i}]); ` +
            'ask for fewer keys per call',
        );
      }
      if (replyBytes > room) break;
    }
    // Fails with OVERLOADED when the loop stopped for want of room.
    this.#hold(context, replyBytes);
    return values;
  }

  async #publish(key: Buffer, value: Buffer | null, waitForApply: boolean, signal: AbortSignal): Promise<WriteResult> {
    this.#checkWritable(signal);
    const position = await this.#log.append(key, value, signal);
    if (waitForApply) await this.#applied.waitFor(new Map([[position.partition, position.offset + 1]]), signal);
    const tag = await this.#writeTag(signal);
    return { status: 'published', token: tokenAfter(tag, position), version: value === null ? 0 : position.offset + 1 };
  }

  async #writeOneIf(
    key: Buffer,
    value: Buffer | null,
    condition: WriteCondition,
    request: { readonly waitForApply: boolean },
    signal: AbortSignal,
  ): Promise<WriteResult> {
    this.#checks.condition(condition, 'condition');
    const verdict = await this.#decide([{ key, value, condition }], request.waitForApply, signal);
    return { status: verdict.status, token: verdict.token, version: verdict.versions[0] as number };
  }

  /** A batch with conditions: one conditional write, all of it or nothing. */
  async #writeBatchIf(request: BatchRequest, signal: AbortSignal): Promise<BatchResult> {
    request.mutations.forEach(({ condition }, i) => {
      this.#checks.condition(condition ?? null, `mutations[${i}].condition`);
    });
    const verdict = await this.#decide(
      request.mutations.map(({ key, value, delete: isDelete, condition }) => ({
        key,
        value: isDelete ? null : value,
        condition: condition ?? null,
      })),
      request.waitForApply,
      signal,
    );
    const { partition, offset } = verdict.position;
    return {
      status: verdict.status,
      outcomes: verdict.versions.map((version, i) => ({
        ok: true,
        version,
        token:
          verdict.status === 'applied'
            ? tokenAfter(this.currentLogTag(), { partition, offset: offset + i })
            : encodeToken(this.currentLogTag(), new Map([[partition, offset]])),
      })),
      token: verdict.token,
    };
  }

  async #decide(
    mutations: readonly ConditionalMutation[],
    waitForApply: boolean,
    signal: AbortSignal,
  ): Promise<{ status: 'applied' | 'conflict'; token: Buffer; versions: readonly number[]; position: LogPosition }> {
    this.#checkWritable(signal);
    const verdict: ConditionalVerdict = await this.#conditional.writeIf(mutations, signal);
    const { partition, offset } = verdict.position;
    // Applied: read up to just past its last record. Not applied: up to where it was decided, so that a read
    // with this token sees the version that won.
    const reached = new Map([[partition, offset + verdict.records]]);
    if (verdict.applied && waitForApply) await this.#applied.waitFor(reached, signal);
    return {
      status: verdict.applied ? 'applied' : 'conflict',
      token: encodeToken(this.currentLogTag(), reached),
      versions: verdict.versions,
      position: verdict.position,
    };
  }

  #checkWritable(signal: AbortSignal): void {
    this.#checkOpen(signal, 'write');
  }

  #checkOpen(signal: AbortSignal, what: string): void {
    if (this.#closed) throw new Kvs2Error('SHUTTING_DOWN', 'the node is shutting down');
    if (signal.aborted) throw abortError(signal, what);
  }

  /**
   * The tag of a plain write's tokens. A node with an empty store listens (and takes writes, which wait for
   * the log to open) before its replica has begun reading: its watermark names no log yet, and a token
   * tagged with that would be refused by every read (TOKEN_FROM_OTHER_LOG). Such a write waits, within its
   * deadline, for the replica to name the log. (A conditional write is decided by the replica: named.)
   */
  async #writeTag(signal: AbortSignal): Promise<Buffer> {
    if (this.#applied.logIdentity === '') await this.#applied.whenNamed(signal);
    return this.currentLogTag();
  }
}

/** The token of one published record: its partition read up to just past it. */
function tokenAfter(logTag: Buffer, position: LogPosition): Buffer {
  return encodeToken(logTag, new Map([[position.partition, position.offset + 1]]));
}
