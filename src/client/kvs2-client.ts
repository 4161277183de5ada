import type { Socket } from 'node:net';
import {
  type CallOptions,
  type ChannelCredentials,
  type ClientOptions,
  type ClientReadableStream,
  type ClientUnaryCall,
  Metadata,
  makeGenericClientConstructor,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import {
  type Condition,
  ConditionKind,
  type DeleteReply,
  type DeleteRequest,
  type Kvs2Client as GeneratedClient,
  type GetReply,
  type GetRequest,
  Kvs2Service,
  type MultiGetReply,
  type MultiGetRequest,
  type ScanReply,
  type ScanRequest,
  type SetReply,
  type SetRequest,
  SetStatus,
  SnapshotChunk,
  SnapshotFormat,
  type StatusReply,
  type StatusRequest,
  type WatchEvent,
  type WatchRequest,
  type WriteReply,
  type WriteRequest,
} from '../gen/kvs2.js';
import { StallWatch } from '../stall-watch.js';
import { Kvs2ClientError } from './client-error.js';
import { Kvs2ClientOptionError, type Kvs2ClientOptions, wholeNumberOption } from './client-options.js';
import { connectDirect, type DirectFetchTarget, directFetchTargetOf } from './direct-fetch.js';
import { readRetryChannelOptions } from './read-retries.js';
import { channelCredentialsOf, serverNameOption } from './tls-credentials.js';

export { ConditionKind, Consistency, NodeState, ReadStatus, SetStatus, WatchEvent_Kind } from '../gen/kvs2.js';
export { Kvs2ClientError, type Kvs2ErrorCode } from './client-error.js';
export {
  Kvs2ClientOptionError,
  type Kvs2ClientOptions,
  type Kvs2ReadRetryOptions,
  type Kvs2TlsOptions,
} from './client-options.js';

type Unary<Req, Reply> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, reply: Reply) => void,
) => ClientUnaryCall;

/**
 * Options of one unary call (a number alone is `timeoutMs`, as before these options existed).
 */
export interface Kvs2CallOptions {
  /** The call's deadline in milliseconds (default: the client's `timeoutMs`). */
  readonly timeoutMs?: number;
  /**
   * Aborting it cancels the call, which rejects with GRPC_CANCELLED. A call whose signal aborted before it
   * began is not sent. A write cancelled after it was sent may still land, as after a deadline: its outcome
   * is unknown (README, "What a write does when a broker fails").
   */
  readonly signal?: AbortSignal;
}

const EMPTY = Buffer.alloc(0);

/**
 * The generated client, but a SnapshotChunk's `data` is a view of the received message, not a copy (the
 * generated decoder copies it): a store image brings hundreds of MiB in 1 MiB chunks. Anything but the one
 * field goes through the generated decoder.
 */
const GeneratedClientClass = makeGenericClientConstructor(
  { ...Kvs2Service, snapshot: { ...Kvs2Service.snapshot, responseDeserialize: readSnapshotChunk } },
  'kvs2.Kvs2',
) as unknown as new (
  address: string,
  credentials: ChannelCredentials,
  options?: Partial<ClientOptions>,
) => GeneratedClient;

function readSnapshotChunk(bytes: Buffer): SnapshotChunk {
  if (bytes.length === 0) return { data: EMPTY };
  if (bytes[0] === 0x0a) {
    let length = 0;
    let scale = 1;
    for (let at = 1; at < 6 && at < bytes.length; at++) {
      const byte = bytes[at] as number;
      length += (byte & 0x7f) * scale;
      scale *= 128;
      if ((byte & 0x80) === 0) {
        if (at + 1 + length === bytes.length) return { data: bytes.subarray(at + 1) };
        break;
      }
    }
  }
  return SnapshotChunk.decode(bytes);
}

/** How a snapshot stream may be ended early. */
export interface Kvs2SnapshotOptions {
  /** Cancels the stream: the iteration throws Kvs2ClientError (GRPC_CANCELLED). */
  readonly signal?: AbortSignal;
  /** A deadline for the whole stream, in ms. None by default: a large store takes minutes to stream. */
  readonly timeoutMs?: number;
  /**
   * Asks the node to send at most this many bytes a second (0, the default: as fast as this client takes
   * them). A snapshot's encoding runs on the thread that serves the node's reads: a backup of a busy node
   * should be paced (`kvs2 snapshot save --endpoint` sends 4 MiB/s by default).
   */
  readonly maxBytesPerSecond?: number;
  /**
   * 'portable' (the default): a snapshot file any later kvs2 reads (docs/snapshot-format.md), for backups.
   * 'store-image': a copy of the node's LMDB file behind a header, for a new node of the same kvs2 to
   * install as its store (what --bootstrap-from asks for). A node older than store images sends the
   * portable format whatever is asked: a reader tells them apart by their first bytes.
   */
  readonly format?: 'portable' | 'store-image';
  /**
   * With 'store-image' and no `maxBytesPerSecond`: offer to fetch the image over a direct transfer beside
   * the call (docs/snapshot-format.md, "Direct transfer"), a plain socket (TLS as the channel's) that moves
   * it several times faster than the stream. The node may still stream it (an older node does); if the
   * direct transfer cannot be reached, the image is asked for again as a stream. Default false.
   */
  readonly direct?: boolean;
  /** Told once, when the first reply arrived, how the bytes come: 'direct' or 'stream'. */
  readonly onTransfer?: (transfer: 'direct' | 'stream') => void;
  /**
   * A progress limit in ms (none by default): the snapshot fails with GRPC_DEADLINE_EXCEEDED when the node
   * sends nothing for this long, before its first byte (which comes once the node has made its snapshot or
   * copy) or between two messages of the stream or two reads of a direct transfer. Time the caller spends
   * on a chunk does not count. A node that accepted the connection and then went silent otherwise holds the
   * stream until the connection fails, which on a live network may be never.
   */
  readonly stallTimeoutMs?: number;
}

/**
 * A promise-based client for kvs2 over gRPC, on the generated stubs. Requests may leave out the fields
 * they do not use (`{ key }` is a whole GetRequest): the defaults are the protobuf ones. Failed calls
 * reject with Kvs2ClientError, whose `kvs2Code` says what failed. Reads answered UNAVAILABLE are retried
 * (see `readRetries`); writes never are.
 *
 * `new Kvs2Client('127.0.0.1:50051', { timeoutMs: 5000 })`, or `new Kvs2Client({ endpoint, ... })`.
 * Options are checked here, once: a wrong one throws Kvs2ClientOptionError naming it.
 */
export class Kvs2Client {
  readonly #client: GeneratedClient;
  readonly #timeoutMs: number;
  readonly #token: string | undefined;
  /** Where direct transfers of store images are fetched; null when the channel's endpoint or credentials do not say. */
  readonly #direct: DirectFetchTarget | null;

  constructor(endpoint: string, options?: Kvs2ClientOptions);
  constructor(options: Kvs2ClientOptions & { readonly endpoint: string });
  constructor(endpointOrOptions: string | Kvs2ClientOptions, maybeOptions: Kvs2ClientOptions = {}) {
    const options = typeof endpointOrOptions === 'string' ? maybeOptions : endpointOrOptions;
    const endpoint = typeof endpointOrOptions === 'string' ? endpointOrOptions : endpointOrOptions.endpoint;
    if (typeof endpoint !== 'string' || endpoint.length === 0) {
      throw new Kvs2ClientOptionError('endpoint', "give the node's address as host:port");
    }
    if (options.token !== undefined && (typeof options.token !== 'string' || !/^\S+$/.test(options.token))) {
      throw new Kvs2ClientOptionError('token', 'must be a non-empty string without spaces');
    }
    this.#token = options.token;
    this.#timeoutMs = wholeNumberOption('timeoutMs', options.timeoutMs, 10_000, 1, 2 ** 31 - 1);
    const maxReceive = wholeNumberOption('maxReceiveBytes', options.maxReceiveBytes, 64 * 1024 * 1024, 1, 2 ** 31 - 1);
    this.#client = new GeneratedClientClass(endpoint, channelCredentialsOf(options), {
      'grpc.max_receive_message_length': maxReceive,
      'grpc.max_send_message_length': maxReceive,
      ...(options.ownConnection ? { 'grpc.use_local_subchannel_pool': 1 } : {}),
      ...serverNameOption(options),
      ...readRetryChannelOptions(options),
    });
    this.#direct = directFetchTargetOf(endpoint, options);
  }

  get(request: Partial<GetRequest> & Pick<GetRequest, 'key'>, options?: number | Kvs2CallOptions): Promise<GetReply> {
    return this.#call(this.#client.get, { consistency: 0, after: [], ...request }, options);
  }

  multiGet(
    request: Partial<MultiGetRequest> & Pick<MultiGetRequest, 'keys'>,
    options?: number | Kvs2CallOptions,
  ): Promise<MultiGetReply> {
    return this.#call(this.#client.multiGet, { consistency: 0, after: [], ...request }, options);
  }

  /**
   * With a `condition`, the reply is `APPLIED` or `CONFLICT` (README "Conditional writes"); a node too old to
   * know conditions answers `PUBLISHED` after writing unconditionally, which rejects here (FAILED_PRECONDITION)
   * so that it is never mistaken for a compare-and-set.
   */
  async set(
    request: Partial<SetRequest> & Pick<SetRequest, 'key' | 'value'>,
    options?: number | Kvs2CallOptions,
  ): Promise<SetReply> {
    const reply = await this.#call(this.#client.set, { waitForApply: false, ...request }, options);
    return checkConditional(hasCondition(request.condition), reply);
  }

  async delete(
    request: Partial<DeleteRequest> & Pick<DeleteRequest, 'key'>,
    options?: number | Kvs2CallOptions,
  ): Promise<DeleteReply> {
    const reply = await this.#call(this.#client.delete, { waitForApply: false, ...request }, options);
    return checkConditional(hasCondition(request.condition), reply);
  }

  async write(
    request: Partial<WriteRequest> & Pick<WriteRequest, 'mutations'>,
    options?: number | Kvs2CallOptions,
  ): Promise<WriteReply> {
    const reply = await this.#call(this.#client.write, { waitForApply: false, ...request }, options);
    return checkConditional(
      request.mutations.some((m) => hasCondition(m.condition)),
      reply,
    );
  }

  scan(request: Partial<ScanRequest>, options?: number | Kvs2CallOptions): Promise<ScanReply> {
    const full: ScanRequest = {
      prefix: EMPTY,
      start: EMPTY,
      end: EMPTY,
      limit: 0,
      keysOnly: false,
      continuation: EMPTY,
      consistency: 0,
      after: [],
      ...request,
    };
    return this.#call(this.#client.scan, full, options);
  }

  /** What the node is doing: its state, version, log, lag per partition and store. */
  status(request: StatusRequest = {}, options?: number | Kvs2CallOptions): Promise<StatusReply> {
    return this.#call(this.#client.status, request, options);
  }

  /** Opens a Watch stream; it runs until cancelled or ended by the server. */
  watch(request: Partial<WatchRequest>): ClientReadableStream<WatchEvent> {
    return this.#client.watch(
      { key: EMPTY, prefix: EMPTY, after: EMPTY, progressIntervalMs: 0, ...request },
      this.#metadata(),
    );
  }

  /**
   * Streams a consistent snapshot of the node's whole store: the chunks, concatenated, are a snapshot file
   * (docs/snapshot-format.md), which a reader must check to its trailer (a stream may be cut short at any
   * chunk). Needs read on every key under --auth-file. The call starts when iteration does, and its chunks
   * are asked for at the iteration's pace; stopping early cancels it. Never retried, whatever `readRetries`
   * says: a stream broken half-way cannot be resumed, only taken again (only a direct transfer whose port
   * cannot be reached is asked for again, as a stream, before any byte). Failures throw Kvs2ClientError.
   */
  async *snapshot(options: Kvs2SnapshotOptions = {}): AsyncIterable<Buffer> {
    const fallback = { toStream: false };
    yield* this.#snapshot(options, fallback);
    if (fallback.toStream) yield* this.#snapshot({ ...options, direct: false }, fallback);
  }

  /** One Snapshot call; sets `fallback.toStream` (and yields nothing) when its direct transfer cannot be reached. */
  async *#snapshot(options: Kvs2SnapshotOptions, fallback: { toStream: boolean }): AsyncIterable<Buffer> {
    const { signal, timeoutMs, stallTimeoutMs, maxBytesPerSecond = 0, format = 'portable' } = options;
    if (timeoutMs !== undefined) wholeNumberOption('timeoutMs', timeoutMs, 0, 1, 2 ** 31 - 1);
    if (stallTimeoutMs !== undefined) wholeNumberOption('stallTimeoutMs', stallTimeoutMs, 0, 1, 2 ** 31 - 1);
    wholeNumberOption('maxBytesPerSecond', maxBytesPerSecond, 0, 0, Number.MAX_SAFE_INTEGER);
    if (signal?.aborted) throw cancelledError('the snapshot was cancelled before it began');
    if (format !== 'portable' && format !== 'store-image') {
      throw new Kvs2ClientOptionError('format', `is ${JSON.stringify(format)}, not 'portable' or 'store-image'`);
    }
    const direct = options.direct === true && format === 'store-image' && maxBytesPerSecond === 0 ? this.#direct : null;
    const call = this.#client.snapshot(
      {
        maxBytesPerSecond,
        format:
          format === 'store-image'
            ? SnapshotFormat.SNAPSHOT_FORMAT_STORE_IMAGE
            : SnapshotFormat.SNAPSHOT_FORMAT_PORTABLE,
        directTransfer: direct !== null,
      },
      this.#metadata(),
      timeoutMs === undefined ? {} : { deadline: Date.now() + timeoutMs },
    );
    // The direct transfer's socket, while one is read: a stall or the caller's abort destroys it too, since
    // a silent node would never end it.
    let socket: Socket | null = null;
    const cancel = (): void => {
      call.cancel();
      socket?.destroy();
    };
    const watch = stallTimeoutMs === undefined ? null : new StallWatch(stallTimeoutMs, cancel);
    let received = 0;
    /** The error to throw instead of `error` when the stream was ended here: a stall, or the caller's abort. */
    const endedHere = (error: unknown): unknown => {
      if (watch?.stalled) {
        const when = received === 0 ? 'before its first byte' : `after ${received} bytes`;
        return new Kvs2ClientError(
          failedCall(status.DEADLINE_EXCEEDED, `the node sent nothing for ${watch.limitMs} ms ${when} of the snapshot`),
        );
      }
      if (signal?.aborted) return cancelledError('the snapshot was cancelled');
      return error;
    };
    signal?.addEventListener('abort', cancel, { once: true });
    try {
      const replies = (call as AsyncIterable<SnapshotChunk>)[Symbol.asyncIterator]();
      watch?.arm();
      let reply = await replies.next();
      watch?.disarm();
      const transfer = reply.done ? undefined : reply.value.directTransfer;
      if (transfer !== undefined && direct !== null) {
        socket = await connectDirect(direct, transfer.port, transfer.ticket, signal).catch(() => null);
        if (socket === null) {
          // The node's transfer port may not be reachable from here (a firewall, a forwarded gRPC port):
          // the stream still is (below, once this call is cancelled).
          fallback.toStream = true;
          return;
        }
        options.onTransfer?.('direct');
        try {
          watch?.arm();
          for await (const bytes of socket) {
            watch?.disarm();
            received += (bytes as Buffer).length;
            yield bytes as Buffer;
            watch?.arm();
          }
          watch?.disarm();
        } catch (error) {
          throw endedHere(
            new Kvs2ClientError(
              failedCall(status.UNAVAILABLE, `the direct transfer broke after ${received} bytes: ${String(error)}`),
            ),
          );
        } finally {
          socket.destroy();
        }
        // The call ends with the transfer's outcome: a failure on the node's side throws here, saying how
        // far the transfer got (a node that died mid-image ends its socket as if it were done).
        watch?.arm();
        reply = await replies.next().catch((error: unknown) => {
          if (!isServiceError(error) || watch?.stalled || signal?.aborted) throw error;
          const details = `the direct transfer ended after ${received} bytes, then the call failed: ${error.details}`;
          throw new Kvs2ClientError(
            Object.assign(new Error(`${error.code} ${status[error.code]}: ${details}`), {
              code: error.code,
              details,
              metadata: error.metadata,
            }),
          );
        });
        watch?.disarm();
        if (!reply.done) throw new Kvs2ClientError(failedCall(status.INTERNAL, 'a message followed a direct transfer'));
        return;
      }
      if (!reply.done) options.onTransfer?.('stream');
      while (!reply.done) {
        received += reply.value.data.length;
        yield reply.value.data;
        watch?.arm();
        reply = await replies.next();
        watch?.disarm();
      }
    } catch (error) {
      const thrown = endedHere(error);
      if (isServiceError(thrown) && !(thrown instanceof Kvs2ClientError)) throw new Kvs2ClientError(thrown);
      throw thrown;
    } finally {
      watch?.close();
      signal?.removeEventListener('abort', cancel);
      // Ends the stream on the node when the caller stopped early (a no-op once it ended).
      call.cancel();
    }
  }

  close(): void {
    this.#client.close();
  }

  /** Each call's metadata: the bearer token, if any. */
  #metadata(): Metadata {
    const metadata = new Metadata();
    if (this.#token !== undefined) metadata.set('authorization', `Bearer ${this.#token}`);
    return metadata;
  }

  #call<Req, Reply>(
    method: Unary<Req, Reply>,
    request: Req,
    options: number | Kvs2CallOptions | undefined,
  ): Promise<Reply> {
    const { timeoutMs, signal } =
      typeof options === 'number' ? { timeoutMs: options, signal: undefined } : (options ?? {});
    // A call cancelled before it began is never sent: a write that was not sent cannot land.
    if (signal?.aborted) return Promise.reject(cancelledError('the call was cancelled before it began'));
    return new Promise((resolve, reject) => {
      const call = method.call(
        this.#client,
        request,
        this.#metadata(),
        { deadline: Date.now() + (timeoutMs ?? this.#timeoutMs) },
        (error, reply) => {
          signal?.removeEventListener('abort', cancel);
          if (error) reject(new Kvs2ClientError(error));
          else resolve(reply);
        },
      );
      // grpc-js then ends the call with CANCELLED, through the callback above.
      const cancel = (): void => call.cancel();
      signal?.addEventListener('abort', cancel, { once: true });
    });
  }
}

function hasCondition(condition: Condition | undefined): boolean {
  return condition !== undefined && condition.kind !== ConditionKind.CONDITION_NONE;
}

/** A conditional write answered PUBLISHED: the node ignored the condition (it predates them). */
function checkConditional<Reply extends { status: SetStatus }>(conditional: boolean, reply: Reply): Reply {
  if (!conditional || reply.status !== SetStatus.PUBLISHED) return reply;
  const details =
    'the node does not know conditional writes (an older kvs2): it ignored the condition and wrote unconditionally';
  throw new Kvs2ClientError(
    Object.assign(new Error(`${status.FAILED_PRECONDITION} FAILED_PRECONDITION: ${details}`), {
      code: status.FAILED_PRECONDITION,
      details,
      metadata: new Metadata(),
    }),
  );
}

/** A grpc-js call error (what a stream's iteration throws), as opposed to a bug in this code. */
function isServiceError(error: unknown): error is ServiceError {
  return error instanceof Error && typeof (error as Partial<ServiceError>).code === 'number';
}

/** The error of a call cancelled before it reached the node, as grpc-js would give it. */
function cancelledError(details: string): Kvs2ClientError {
  return new Kvs2ClientError(failedCall(status.CANCELLED, details));
}

/** A call's failure as grpc-js would report it, for what the client finds itself. */
function failedCall(code: status, details: string): ServiceError {
  return Object.assign(new Error(`${code} ${status[code]}: ${details}`), { code, details, metadata: new Metadata() });
}
