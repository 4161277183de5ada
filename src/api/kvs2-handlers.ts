import {
  status as grpcStatus,
  type handleServerStreamingCall,
  type handleUnaryCall,
  type ServerUnaryCall,
  type sendUnaryData,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { Kvs2Error } from '../errors.js';
import type {
  DeleteReply,
  DeleteRequest,
  GetReply,
  GetRequest,
  MultiGetReply,
  MultiGetRequest,
  ScanReply,
  ScanRequest,
  SetReply,
  SetRequest,
  StatusReply,
  StatusRequest,
  WatchEvent,
  WatchRequest,
  WriteReply,
  WriteRequest,
} from '../gen/kvs2.js';
import type { KvService } from '../service/kv-service.js';
import type { NodeStatusReport } from '../service/node-status.js';
import type { Answer } from '../service/requests.js';
import type { GrpcCallObserver, MethodCallObserver } from './call-observer.js';
import { CallScope } from './call-scope.js';
import { MalformedRequest, type Received } from './kvs2-definition.js';
import { toStatusError } from './status-mapping.js';
import {
  batchReplyOf,
  consistencyOf,
  getReplyOf,
  multiGetReplyOf,
  scanReplyOf,
  statusReplyOf,
  writeReplyOf,
} from './translate.js';
import { watchHandler } from './watch-handler.js';

export interface Kvs2HandlerOptions {
  readonly service: KvService;
  readonly status: Pick<NodeStatusReport, 'status'>;
  readonly requestTimeoutMs: number;
  /** Unary calls waiting for their answer, each as a function that answers it now (shutdown's last resort). */
  readonly openCalls: Set<(reason: Kvs2Error) => void>;
  /** Open watches, each as a function that ends it: shutdown ends them instead of waiting for them. */
  readonly openWatches: Set<(reason: Kvs2Error) => void>;
  /** Sees every call begin and end with its status code (metrics). */
  readonly calls: GrpcCallObserver;
}

/** The kvs2.Kvs2 handlers, over requests checked by the strict definition (kvs2-definition.ts). */
export interface Kvs2Handlers extends UntypedServiceImplementation {
  get: handleUnaryCall<Received<GetRequest>, GetReply>;
  multiGet: handleUnaryCall<Received<MultiGetRequest>, MultiGetReply>;
  scan: handleUnaryCall<Received<ScanRequest>, ScanReply>;
  set: handleUnaryCall<Received<SetRequest>, SetReply>;
  delete: handleUnaryCall<Received<DeleteRequest>, DeleteReply>;
  write: handleUnaryCall<Received<WriteRequest>, WriteReply>;
  watch: handleServerStreamingCall<Received<WatchRequest>, WatchEvent>;
  status: handleUnaryCall<Received<StatusRequest>, StatusReply>;
}

/** The service's full name, as metrics label it. */
const SERVICE_NAME = 'kvs2.Kvs2';

/**
 * Each handler translates the request, calls the service, and maps its answer or error back to the wire;
 * every decision (validation, consistency, deadlines) is the service's.
 */
export function kvs2Handlers({
  service,
  status,
  requestTimeoutMs,
  openCalls,
  openWatches,
  calls,
}: Kvs2HandlerOptions): Kvs2Handlers {
  const observed = {
    get: calls.method(SERVICE_NAME, 'Get', 'unary'),
    multiGet: calls.method(SERVICE_NAME, 'MultiGet', 'unary'),
    scan: calls.method(SERVICE_NAME, 'Scan', 'unary'),
    set: calls.method(SERVICE_NAME, 'Set', 'unary'),
    delete: calls.method(SERVICE_NAME, 'Delete', 'unary'),
    write: calls.method(SERVICE_NAME, 'Write', 'unary'),
    watch: calls.method(SERVICE_NAME, 'Watch', 'server_stream'),
    status: calls.method(SERVICE_NAME, 'Status', 'unary'),
  };

  /**
   * Answers the call with what `run` gives, at once when it is synchronous (a local read: no promise).
   * Every answer goes through `reply` or `fail`, which tell the observer the call's status code.
   */
  const handle = <Req, Result, Reply>(
    observer: MethodCallObserver,
    call: ServerUnaryCall<Received<Req>, Reply>,
    callback: sendUnaryData<Reply>,
    run: (request: Req, scope: CallScope) => Answer<Result>,
    toReply: (result: Result, request: Req) => Reply,
  ): void => {
    const startedAt = observer.started();
    const request = call.request;
    if (request instanceof MalformedRequest) {
      fail(observer, startedAt, callback, new Kvs2Error('INVALID_ARGUMENT', `malformed request: ${request.reason}`));
      return;
    }
    const scope = new CallScope(call, requestTimeoutMs);
    let answer: Answer<Result>;
    try {
      answer = run(request, scope);
    } catch (error) {
      scope.done();
      fail(observer, startedAt, callback, error);
      return;
    }
    if (!(answer instanceof Promise)) {
      scope.done();
      reply(observer, startedAt, callback, toReply(answer, request));
      return;
    }
    // Answered once: by the work, or by a shutdown that cannot wait for it any longer.
    let answered = false;
    const settle = (error: unknown, result?: Result): void => {
      if (answered) return;
      answered = true;
      openCalls.delete(end);
      // The scope ends before answering: grpc-js emits 'cancelled' once a call is answered, which must
      // not count as the client giving up.
      scope.done();
      if (error === null) reply(observer, startedAt, callback, toReply(result as Result, request));
      else fail(observer, startedAt, callback, error);
    };
    const end = (reason: Kvs2Error): void => settle(reason);
    openCalls.add(end);
    answer.then(
      (result) => settle(null, result),
      (error: unknown) => settle(error ?? new Kvs2Error('INCONSISTENT_STATE', 'a call failed without a reason')),
    );
  };

  return {
    get(call, callback) {
      handle(
        observed.get,
        call,
        callback,
        (r, scope) => service.get({ key: r.key, consistency: consistencyOf(r.consistency), after: r.after }, scope),
        getReplyOf,
      );
    },

    multiGet(call, callback) {
      handle(
        observed.multiGet,
        call,
        callback,
        (r, scope) =>
          service.multiGet({ keys: r.keys, consistency: consistencyOf(r.consistency), after: r.after }, scope),
        (result, r) => multiGetReplyOf(r.keys, result),
      );
    },

    scan(call, callback) {
      handle(
        observed.scan,
        call,
        callback,
        (r, scope) => service.scan({ ...r, consistency: consistencyOf(r.consistency) }, scope),
        scanReplyOf,
      );
    },

    set(call, callback) {
      handle(observed.set, call, callback, (r, scope) => service.set(r, scope), writeReplyOf);
    },

    delete(call, callback) {
      handle(observed.delete, call, callback, (r, scope) => service.delete(r, scope), writeReplyOf);
    },

    write(call, callback) {
      handle(observed.write, call, callback, (r, scope) => service.write(r, scope), batchReplyOf);
    },

    watch: watchHandler({ service, open: openWatches, observer: observed.watch }),

    status(call, callback) {
      handle(observed.status, call, callback, () => status.status(), statusReplyOf);
    },
  };
}

/** Answers a unary call with its reply; the observer counts it before the reply leaves. */
function reply<Reply>(
  observer: MethodCallObserver,
  startedAt: number,
  callback: sendUnaryData<Reply>,
  message: Reply,
): void {
  observer.handled(grpcStatus.OK, startedAt);
  callback(null, message);
}

/** Answers a unary call with the status its error maps to. */
function fail<Reply>(
  observer: MethodCallObserver,
  startedAt: number,
  callback: sendUnaryData<Reply>,
  error: unknown,
): void {
  const statusError = toStatusError(error);
  observer.handled(statusError.code, startedAt);
  callback(statusError);
}
