import { type ServerUnaryCall, type sendUnaryData, status } from '@grpc/grpc-js';
import { Kvs2Error } from '../errors.js';
import {
  Consistency,
  type DeleteReply,
  type DeleteRequest,
  type GetReply,
  type GetRequest,
  type Kvs2Server,
  type MultiGetReply,
  type MultiGetRequest,
  type MultiGetResponsePart,
  ReadStatus,
  type ScanReply,
  type ScanRequest,
  type SetReply,
  type SetRequest,
  SetStatus,
  type WriteReply,
  type WriteRequest,
} from '../gen/kvs2.js';
import type { KvService, ReadOptions } from '../service/kv-service.js';
import type { ChangeSource } from '../service/watch-session.js';
import { CallScope } from './call-scope.js';
import { toStatusError } from './status-mapping.js';
import { watchHandler } from './watch-handler.js';

const EMPTY = Buffer.alloc(0);

export interface Kvs2HandlerOptions {
  readonly service: KvService;
  readonly changes: ChangeSource;
  readonly requestTimeoutMs: number;
  readonly maxKeyBytes: number;
  readonly openWatches: Set<(reason: Kvs2Error) => void>;
}

/** Translates the kvs2.Kvs2 gRPC service to KvService calls and back; nothing else. */
export function kvs2Handlers({
  service,
  changes,
  requestTimeoutMs,
  maxKeyBytes,
  openWatches,
}: Kvs2HandlerOptions): Kvs2Server {
  /**
   * Runs `read` at once for local reads (the seed's path: synchronous, no timers), or after the read
   * barrier the options ask for, within the call's deadline.
   */
  const withConsistency = <Req extends ConsistencyFields, Reply>(
    call: ServerUnaryCall<Req, Reply>,
    callback: sendUnaryData<Reply>,
    read: () => Reply,
  ): void => {
    let options: ReadOptions;
    try {
      options = readOptions(call.request);
    } catch (error) {
      callback(toStatusError(error));
      return;
    }
    if (service.isLocalRead(options)) {
      let reply: Reply;
      try {
        reply = read();
      } catch (error) {
        callback(toStatusError(error));
        return;
      }
      callback(null, reply);
      return;
    }
    const scope = new CallScope(call, requestTimeoutMs);
    answerWhenSettled(scope, callback, service.readBarrier(options, scope.signal).then(read));
  };

  /** Runs a write within the call's deadline. */
  const writing = <Req, Reply>(
    call: ServerUnaryCall<Req, Reply>,
    callback: sendUnaryData<Reply>,
    write: (signal: AbortSignal) => Promise<Reply>,
  ): void => {
    const scope = new CallScope(call, requestTimeoutMs);
    let work: Promise<Reply>;
    try {
      work = write(scope.signal);
    } catch (error) {
      work = Promise.reject(error);
    }
    answerWhenSettled(scope, callback, work);
  };

  return {
    get(call: ServerUnaryCall<GetRequest, GetReply>, callback: sendUnaryData<GetReply>): void {
      const { key } = call.request;
      withConsistency(call, callback, () => {
        const value = service.get(key);
        return value === undefined
          ? { status: ReadStatus.NOT_FOUND, data: EMPTY, token: service.appliedToken() }
          : { status: ReadStatus.OK, data: value, token: service.appliedToken() };
      });
    },

    multiGet(call: ServerUnaryCall<MultiGetRequest, MultiGetReply>, callback: sendUnaryData<MultiGetReply>): void {
      const { keys } = call.request;
      withConsistency(call, callback, () => {
        const values = service.getMany(keys);
        const parts: MultiGetResponsePart[] = new Array(keys.length);
        for (let i = 0; i < keys.length; i++) {
          const value = values[i];
          parts[i] =
            value === undefined
              ? { key: keys[i] as Buffer, status: ReadStatus.NOT_FOUND, data: EMPTY }
              : { key: keys[i] as Buffer, status: ReadStatus.OK, data: value };
        }
        return { parts, token: service.appliedToken() };
      });
    },

    scan(call: ServerUnaryCall<ScanRequest, ScanReply>, callback: sendUnaryData<ScanReply>): void {
      const request = call.request;
      withConsistency(call, callback, () => {
        const { page, continuation } = service.scan(request);
        return {
          items: page.items.map((item) => ({ key: item.key, value: item.value ?? EMPTY })),
          continuation: continuation ?? EMPTY,
          token: service.appliedToken(),
        };
      });
    },

    set(call: ServerUnaryCall<SetRequest, SetReply>, callback: sendUnaryData<SetReply>): void {
      const { key, value, waitForApply } = call.request;
      writing(call, callback, async (signal) => ({
        status: SetStatus.PUBLISHED,
        token: await service.set(key, value, { waitForApply }, signal),
      }));
    },

    delete(call: ServerUnaryCall<DeleteRequest, DeleteReply>, callback: sendUnaryData<DeleteReply>): void {
      const { key, waitForApply } = call.request;
      writing(call, callback, async (signal) => ({
        status: SetStatus.PUBLISHED,
        token: await service.delete(key, { waitForApply }, signal),
      }));
    },

    write(call: ServerUnaryCall<WriteRequest, WriteReply>, callback: sendUnaryData<WriteReply>): void {
      const { mutations, waitForApply } = call.request;
      writing(call, callback, async (signal) => {
        const { outcomes, token } = await service.write(
          mutations.map((m) => ({ key: m.key, value: m.delete ? null : m.value })),
          { waitForApply },
          signal,
        );
        const results = outcomes.map((outcome) => {
          if (outcome.ok) return { code: status.OK, message: '', token: outcome.token };
          const error = toStatusError(outcome.error);
          return { code: error.code, message: error.details, token: EMPTY };
        });
        return { results, token: token ?? EMPTY };
      });
    },

    watch: watchHandler({ service, changes, maxKeyBytes, open: openWatches }),
  };
}

interface ConsistencyFields {
  consistency: Consistency;
  after: Buffer[];
}

function readOptions(request: ConsistencyFields): ReadOptions {
  switch (request.consistency) {
    case Consistency.CONSISTENCY_LOCAL:
      // Tokens are honoured whatever the mode says: a client that passes them wants them seen.
      return { consistency: request.after.length > 0 ? 'at-least' : 'local', after: request.after };
    case Consistency.CONSISTENCY_AT_LEAST:
      return { consistency: 'at-least', after: request.after };
    case Consistency.CONSISTENCY_LATEST:
      return { consistency: 'latest', after: request.after };
    default:
      throw new Kvs2Error('INVALID_ARGUMENT', `unknown consistency ${String(request.consistency)}`);
  }
}

/**
 * Answers the call with what `work` settles to. The scope ends first: grpc-js emits 'cancelled' once a call
 * is answered, which must not count as the client giving up.
 */
function answerWhenSettled<Reply>(scope: CallScope, callback: sendUnaryData<Reply>, work: Promise<Reply>): void {
  work.then(
    (reply) => {
      scope.done();
      callback(null, reply);
    },
    (error: unknown) => {
      scope.done();
      callback(toStatusError(error));
    },
  );
}
