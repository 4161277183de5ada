import type { status } from '@grpc/grpc-js';

/** The kinds of gRPC method kvs2 serves, named as go-grpc-prometheus labels them (`grpc_type`). */
export type GrpcMethodType = 'unary' | 'server_stream';

/**
 * Sees every call of one method begin and end. Both are on every call's path: an implementation must not
 * allocate or look anything up per call (resolve labels once, in `GrpcCallObserver.method`).
 */
export interface MethodCallObserver {
  /** A call began; returns what `handled` needs to time it (0 when the observer does not time calls). */
  started(): number;
  /** The call ended with this status code; `startedAt` is what `started()` returned for it. */
  handled(code: status, startedAt: number): void;
}

/** Watches the calls of a gRPC server, one method at a time; the handlers ask for each method once. */
export interface GrpcCallObserver {
  method(service: string, method: string, type: GrpcMethodType): MethodCallObserver;
}

const IGNORED: MethodCallObserver = {
  started: () => 0,
  handled: () => {},
};

/** Observes nothing: what a node without metrics uses, so that its calls pay for nothing. */
export const NO_CALL_OBSERVER: GrpcCallObserver = { method: () => IGNORED };
