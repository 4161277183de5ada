import type { ServerUnaryCall, sendUnaryData } from '@grpc/grpc-js';
import {
  type GetReply,
  type GetRequest,
  type Kvs2Server,
  type MultiGetReply,
  type MultiGetRequest,
  type MultiGetResponsePart,
  ReadStatus,
  type SetReply,
  type SetRequest,
  SetStatus,
} from '../gen/kvs2.js';
import type { KvService } from '../service/kv-service.js';
import { CallScope } from './call-scope.js';
import { toStatusError } from './status-mapping.js';

const EMPTY = Buffer.alloc(0);
const PUBLISHED: SetReply = Object.freeze({ status: SetStatus.PUBLISHED });

/** Translates the kvs2.Kvs2 gRPC service to KvService calls and back; nothing else. */
export function kvs2Handlers(service: KvService, requestTimeoutMs: number): Kvs2Server {
  return {
    get(call: ServerUnaryCall<GetRequest, GetReply>, callback: sendUnaryData<GetReply>): void {
      let value: Buffer | undefined;
      try {
        value = service.get(call.request.key);
      } catch (error) {
        callback(toStatusError(error));
        return;
      }
      callback(
        null,
        value === undefined ? { status: ReadStatus.NOT_FOUND, data: EMPTY } : { status: ReadStatus.OK, data: value },
      );
    },

    multiGet(call: ServerUnaryCall<MultiGetRequest, MultiGetReply>, callback: sendUnaryData<MultiGetReply>): void {
      const keys = call.request.keys;
      let values: Array<Buffer | undefined>;
      try {
        values = service.getMany(keys);
      } catch (error) {
        callback(toStatusError(error));
        return;
      }
      const parts: MultiGetResponsePart[] = new Array(keys.length);
      for (let i = 0; i < keys.length; i++) {
        const value = values[i];
        parts[i] =
          value === undefined
            ? { key: keys[i] as Buffer, status: ReadStatus.NOT_FOUND, data: EMPTY }
            : { key: keys[i] as Buffer, status: ReadStatus.OK, data: value };
      }
      callback(null, { parts });
    },

    set(call: ServerUnaryCall<SetRequest, SetReply>, callback: sendUnaryData<SetReply>): void {
      const scope = new CallScope(call, requestTimeoutMs);
      service.set(call.request.key, call.request.value, scope.signal).then(
        () => {
          scope.done();
          callback(null, PUBLISHED);
        },
        (error: unknown) => {
          scope.done();
          callback(toStatusError(error));
        },
      );
    },
  };
}
