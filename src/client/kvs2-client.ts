import { type CallOptions, type ClientReadableStream, credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import {
  type DeleteReply,
  type DeleteRequest,
  Kvs2Client as GeneratedClient,
  type GetReply,
  type GetRequest,
  type MultiGetReply,
  type MultiGetRequest,
  type ScanReply,
  type ScanRequest,
  type SetReply,
  type SetRequest,
  type WatchEvent,
  type WatchRequest,
  type WriteReply,
  type WriteRequest,
} from '../gen/kvs2.js';

import { Kvs2ClientError } from './client-error.js';

export { Consistency, ReadStatus, SetStatus, WatchEvent_Kind } from '../gen/kvs2.js';
export { Kvs2ClientError, type Kvs2ErrorCode } from './client-error.js';

export interface Kvs2ClientOptions {
  /** Default deadline of each call, in milliseconds (default 10 s). */
  readonly timeoutMs?: number;
  /** Largest reply accepted, in bytes (default 64 MiB). */
  readonly maxReceiveBytes?: number;
  /**
   * Use a connection of this client's own instead of sharing one with other clients of the same address
   * (grpc-js shares by default); a paused Watch then cannot hold up other calls' flow control.
   */
  readonly ownConnection?: boolean;
}

type Unary<Req, Reply> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, reply: Reply) => void,
) => unknown;

const EMPTY = Buffer.alloc(0);

/**
 * A promise-based client for kvs2 over gRPC, on the generated stubs. Requests may leave out the fields
 * they do not use (`{ key }` is a whole GetRequest): the defaults are the protobuf ones. Failed calls
 * reject with Kvs2ClientError, whose `kvs2Code` says what failed.
 */
export class Kvs2Client {
  readonly #client: GeneratedClient;
  readonly #timeoutMs: number;

  constructor(address: string, options: Kvs2ClientOptions = {}) {
    const maxReceive = options.maxReceiveBytes ?? 64 * 1024 * 1024;
    this.#client = new GeneratedClient(address, credentials.createInsecure(), {
      'grpc.max_receive_message_length': maxReceive,
      'grpc.max_send_message_length': maxReceive,
      ...(options.ownConnection ? { 'grpc.use_local_subchannel_pool': 1 } : {}),
    });
    this.#timeoutMs = options.timeoutMs ?? 10_000;
  }

  get(request: Partial<GetRequest> & Pick<GetRequest, 'key'>, timeoutMs?: number): Promise<GetReply> {
    return this.#call(this.#client.get, { consistency: 0, after: [], ...request }, timeoutMs);
  }

  multiGet(
    request: Partial<MultiGetRequest> & Pick<MultiGetRequest, 'keys'>,
    timeoutMs?: number,
  ): Promise<MultiGetReply> {
    return this.#call(this.#client.multiGet, { consistency: 0, after: [], ...request }, timeoutMs);
  }

  set(request: Partial<SetRequest> & Pick<SetRequest, 'key' | 'value'>, timeoutMs?: number): Promise<SetReply> {
    return this.#call(this.#client.set, { waitForApply: false, ...request }, timeoutMs);
  }

  delete(request: Partial<DeleteRequest> & Pick<DeleteRequest, 'key'>, timeoutMs?: number): Promise<DeleteReply> {
    return this.#call(this.#client.delete, { waitForApply: false, ...request }, timeoutMs);
  }

  write(request: Partial<WriteRequest> & Pick<WriteRequest, 'mutations'>, timeoutMs?: number): Promise<WriteReply> {
    return this.#call(this.#client.write, { waitForApply: false, ...request }, timeoutMs);
  }

  scan(request: Partial<ScanRequest>, timeoutMs?: number): Promise<ScanReply> {
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
    return this.#call(this.#client.scan, full, timeoutMs);
  }

  /** Opens a Watch stream; it runs until cancelled or ended by the server. */
  watch(request: Partial<WatchRequest>): ClientReadableStream<WatchEvent> {
    return this.#client.watch({ key: EMPTY, prefix: EMPTY, after: EMPTY, progressIntervalMs: 0, ...request });
  }

  close(): void {
    this.#client.close();
  }

  #call<Req, Reply>(method: Unary<Req, Reply>, request: Req, timeoutMs: number | undefined): Promise<Reply> {
    return new Promise((resolve, reject) => {
      method.call(
        this.#client,
        request,
        new Metadata(),
        { deadline: Date.now() + (timeoutMs ?? this.#timeoutMs) },
        (error, reply) => (error ? reject(new Kvs2ClientError(error)) : resolve(reply)),
      );
    });
  }
}
