/**
 * The ceiling for kvs2's stack: a gRPC server on the same library (@grpc/grpc-js), the same generated
 * service definition and the same server options as kvs2, that does no work. Get answers a fixed value,
 * MultiGet one fixed part per key asked, Set PUBLISHED at once. The other RPCs answer UNIMPLEMENTED.
 *
 *   node dist/bench/noop-server.js --listen 127.0.0.1:PORT [--value-bytes 100]
 *
 * Prints one line `noop listening on HOST:PORT` when ready; stops on SIGINT/SIGTERM.
 */
import { Server, ServerCredentials, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js';
import { Command } from 'commander';
import { grpcServerOptions } from '../src/api/grpc-server.js';
import { parseConfig } from '../src/config/config.js';
import {
  GetReply,
  type GetRequest,
  Kvs2Service,
  MultiGetReply,
  type MultiGetRequest,
  MultiGetResponsePart,
  ReadStatus,
  SetReply,
  type SetRequest,
  SetStatus,
} from '../src/gen/kvs2.js';

const options = new Command('noop-server')
  .requiredOption('--listen <host:port>', 'address to listen on')
  .option('--value-bytes <n>', 'size of the value every Get returns', '100')
  .parse()
  .opts<{ listen: string; valueBytes: string }>();

// kvs2's server options for its default limits.
const defaults = parseConfig({});
const server = new Server(
  grpcServerOptions({ maxRequestBytes: defaults.maxRequestBytes, maxReplyBytes: defaults.limits.maxReplyBytes }),
);

const value = Buffer.alloc(Number(options.valueBytes), 0x78);
// Replies built from the generated defaults, so fields added to the proto later keep their defaults.
const getReply: GetReply = { ...GetReply.decode(new Uint8Array()), status: ReadStatus.OK, data: value };
const setReply: SetReply = { ...SetReply.decode(new Uint8Array()), status: SetStatus.PUBLISHED };
const emptyMultiGetReply: MultiGetReply = MultiGetReply.decode(new Uint8Array());
const emptyPart: MultiGetResponsePart = MultiGetResponsePart.decode(new Uint8Array());

server.addService(Kvs2Service, {
  get: (_call: ServerUnaryCall<GetRequest, GetReply>, callback: sendUnaryData<GetReply>) => callback(null, getReply),
  multiGet: (call: ServerUnaryCall<MultiGetRequest, MultiGetReply>, callback: sendUnaryData<MultiGetReply>) =>
    callback(null, {
      ...emptyMultiGetReply,
      parts: call.request.keys.map((key) => ({ ...emptyPart, key, status: ReadStatus.OK, data: value })),
    }),
  set: (_call: ServerUnaryCall<SetRequest, SetReply>, callback: sendUnaryData<SetReply>) => callback(null, setReply),
});

server.bindAsync(options.listen, ServerCredentials.createInsecure(), (error, port) => {
  if (error) {
    process.stderr.write(`noop-server: cannot listen on ${options.listen}: ${error.message}\n`);
    process.exit(1);
  }
  process.stdout.write(`noop listening on ${options.listen.replace(/:\d+$/, '')}:${port}\n`);
});

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => server.tryShutdown(() => process.exit(0)));
}
