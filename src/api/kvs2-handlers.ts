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
  SnapshotChunk,
  SnapshotRequest,
  StatusReply,
  StatusRequest,
  WatchEvent,
  WatchRequest,
  WriteReply,
  WriteRequest,
} from '../gen/kvs2.js';
import type { KvService } from '../service/kv-service.js';
import type { StatusSource } from '../service/node-status.js';
import type { Answer } from '../service/requests.js';
import { type CallGuard, type CallNeeds, EVERY_KEY, keyTarget, scanTarget } from './call-auth.js';
import type { GrpcCallObserver, MethodCallObserver } from './call-observer.js';
import { CallScope } from './call-scope.js';
import type { DirectTransferEndpoint } from './direct-transfer.js';
import { MalformedRequest, type Received } from './kvs2-definition.js';
import { type EncodedReply, encodeGetReply, encodeMultiGetReply } from './reply-encoding.js';
import type { SendStallOptions } from './send-stall.js';
import { snapshotHandler } from './snapshot-handler.js';
import { toStatusError } from './status-mapping.js';
import {
  batchReplyOf,
  batchRequestOf,
  consistencyOf,
  deleteRequestOf,
  putRequestOf,
  scanReplyOf,
  statusReplyOf,
  writeReplyOf,
} from './translate.js';
import { watchHandler } from './watch-handler.js';

export interface Kvs2HandlerOptions {
  readonly service: KvService;
  readonly status: StatusSource;
  readonly requestTimeoutMs: number;
  /** Unary calls waiting for their answer, each as a function that answers it now (shutdown's last resort). */
  readonly openCalls: Set<(reason: Kvs2Error) => void>;
  /** Open watches, each as a function that ends it: shutdown ends them instead of waiting for them. */
  readonly openWatches: Set<(reason: Kvs2Error) => void>;
  /** Open snapshot streams, each as a function that ends it: shutdown ends them too. */
  readonly openSnapshots: Set<(reason: Kvs2Error) => void>;
  /** Sees every call begin and end with its status code (metrics). */
  readonly calls: GrpcCallObserver;
  /** Checks each call's token and permissions (--auth-file); null: every call is allowed. */
  readonly guard: CallGuard | null;
  /** Subscribes to reloads of the auth file (open watches are checked again); null without auth. */
  readonly guardReloads: ((listener: () => void) => () => void) | null;
  /** Where store images are handed out by direct transfer; null: streamed on the call. */
  readonly directTransfer: () => DirectTransferEndpoint | null;
  /** The send-side progress limit of snapshots and store images, and who is told when it ends one. */
  readonly sendStall: SendStallOptions;
}

/** The kvs2.Kvs2 handlers, over requests checked by the strict definition (kvs2-definition.ts). */
export interface Kvs2Handlers extends UntypedServiceImplementation {
  get: handleUnaryCall<Received<GetRequest>, GetReply | EncodedReply>;
  multiGet: handleUnaryCall<Received<MultiGetRequest>, MultiGetReply | EncodedReply>;
  scan: handleUnaryCall<Received<ScanRequest>, ScanReply>;
  set: handleUnaryCall<Received<SetRequest>, SetReply>;
  delete: handleUnaryCall<Received<DeleteRequest>, DeleteReply>;
  write: handleUnaryCall<Received<WriteRequest>, WriteReply>;
  watch: handleServerStreamingCall<Received<WatchRequest>, WatchEvent>;
  status: handleUnaryCall<Received<StatusRequest>, StatusReply>;
  snapshot: handleServerStreamingCall<Received<SnapshotRequest>, SnapshotChunk>;
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
  openSnapshots,
  calls,
  guard,
  guardReloads,
  directTransfer,
  sendStall,
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
    snapshot: calls.method(SERVICE_NAME, 'Snapshot', 'server_stream'),
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
    method: string,
    needs: (request: Req) => CallNeeds,
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
      // With auth on, nothing reaches the service before the caller is known and allowed.
      const checked = guard === null ? undefined : guard(call, method, needs(request));
      answer = checked === undefined ? run(request, scope) : checked.then(() => run(request, scope));
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
        encodeGetReply,
        'Get',
        (r) => ({ access: 'read', targets: [keyTarget(r.key)] }),
      );
    },

    multiGet(call, callback) {
      handle(
        observed.multiGet,
        call,
        callback,
        (r, scope) =>
          service.multiGet({ keys: r.keys, consistency: consistencyOf(r.consistency), after: r.after }, scope),
        (result, r) => encodeMultiGetReply(r.keys, result),
        'MultiGet',
        (r) => ({ access: 'read', targets: r.keys.map(keyTarget) }),
      );
    },

    scan(call, callback) {
      handle(
        observed.scan,
        call,
        callback,
        (r, scope) => service.scan({ ...r, consistency: consistencyOf(r.consistency) }, scope),
        scanReplyOf,
        'Scan',
        (r) => ({ access: 'read', targets: [scanTarget(r)] }),
      );
    },

    set(call, callback) {
      handle(
        observed.set,
        call,
        callback,
        (r, scope) => service.set(putRequestOf(r), scope),
        writeReplyOf,
        'Set',
        (r) => ({
          access: 'write',
          targets: [keyTarget(r.key)],
        }),
      );
    },

    delete(call, callback) {
      handle(
        observed.delete,
        call,
        callback,
        (r, scope) => service.delete(deleteRequestOf(r), scope),
        writeReplyOf,
        'Delete',
        (r) => ({
          access: 'write',
          targets: [keyTarget(r.key)],
        }),
      );
    },

    write(call, callback) {
      // Every mutation's key is checked before any is written: a partly denied Write writes nothing.
      handle(
        observed.write,
        call,
        callback,
        (r, scope) => service.write(batchRequestOf(r), scope),
        batchReplyOf,
        'Write',
        (r) => ({
          access: 'write',
          targets: r.mutations.map((m) => keyTarget(m.key)),
        }),
      );
    },

    watch: watchHandler({ service, open: openWatches, observer: observed.watch, guard, guardReloads }),

    status(call, callback) {
      // The status names the node's keys count and log: it needs read on every key.
      handle(
        observed.status,
        call,
        callback,
        () => status.status(),
        statusReplyOf,
        'Status',
        () => ({
          access: 'read',
          targets: [EVERY_KEY],
        }),
      );
    },

    snapshot: snapshotHandler({
      service,
      open: openSnapshots,
      observer: observed.snapshot,
      guard,
      directTransfer,
      sendStall,
    }),
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
