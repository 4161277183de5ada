/**
 * The ceiling for kvs2's stack: a gRPC server on the same library (@grpc/grpc-js), the same generated
 * service definition and the same server options as kvs2, that does no work. Get answers a fixed value,
 * MultiGet one fixed part per key asked, Set PUBLISHED at once. The other RPCs answer UNIMPLEMENTED.
 * `--stack http2` serves the same answers from `node:http2` with no gRPC library (bench/http2-noop.ts):
 * the ceiling of Node's HTTP/2 itself, to tell grpc-js's share of a call from HTTP/2's.
 *
 *   node dist/bench/noop-server.js --listen 127.0.0.1:PORT [--value-bytes 100] [--stack grpc-js|http2]
 *
 * Prints one line `noop listening on HOST:PORT` when ready; stops on SIGINT/SIGTERM.
 */
import { Server, ServerCredentials, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js';
import { Command } from 'commander';
import { grpcServerOptions } from '../src/api/grpc-server.js';
import { parseConfig } from '../src/config/config.js';
import {
  GetReply,
  GetRequest,
  Kvs2Service,
  MultiGetReply,
  MultiGetRequest,
  MultiGetResponsePart,
  ReadStatus,
  SetReply,
  SetRequest,
  SetStatus,
} from '../src/gen/kvs2.js';
import { listenBareHttp2, type UnaryHandler } from './http2-noop.js';

const options = new Command('noop-server')
  .requiredOption('--listen <host:port>', 'address to listen on')
  .option('--value-bytes <n>', 'size of the value every Get returns', '100')
  .option('--stack <stack>', "grpc-js (kvs2's stack) or http2 (node:http2 alone)", 'grpc-js')
  .parse()
  .opts<{ listen: string; valueBytes: string; stack: string }>();

const value = Buffer.alloc(Number(options.valueBytes), 0x78);
// Replies built from the generated defaults, so fields added to the proto later keep their defaults.
const getReply: GetReply = { ...GetReply.decode(new Uint8Array()), status: ReadStatus.OK, data: value };
const setReply: SetReply = { ...SetReply.decode(new Uint8Array()), status: SetStatus.PUBLISHED };
const emptyMultiGetReply: MultiGetReply = MultiGetReply.decode(new Uint8Array());
const emptyPart: MultiGetResponsePart = MultiGetResponsePart.decode(new Uint8Array());

function multiGetReply(keys: readonly Buffer[]): MultiGetReply {
  return {
    ...emptyMultiGetReply,
    parts: keys.map((key) => ({ ...emptyPart, key, status: ReadStatus.OK, data: value })),
  };
}

const [host, portText] = [options.listen.replace(/:\d*$/, ''), options.listen.replace(/^.*:/, '')];
const announce = (port: number) => process.stdout.write(`noop listening on ${host}:${port}\n`);

if (options.stack === 'http2') {
  const methods = new Map<string, UnaryHandler>([
    [
      '/kvs2.Kvs2/Get',
      (request) => {
        GetRequest.decode(request);
        return GetReply.encode(getReply).finish();
      },
    ],
    [
      '/kvs2.Kvs2/Set',
      (request) => {
        SetRequest.decode(request);
        return SetReply.encode(setReply).finish();
      },
    ],
    [
      '/kvs2.Kvs2/MultiGet',
      (request) => MultiGetReply.encode(multiGetReply(MultiGetRequest.decode(request).keys)).finish(),
    ],
  ]);
  const bare = await listenBareHttp2(host, Number(portText), methods);
  announce(bare.port);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => void bare.close().then(() => process.exit(0)));
  }
} else if (options.stack === 'grpc-js') {
  serveGrpcJs();
} else {
  process.stderr.write(`noop-server: --stack must be grpc-js or http2, not ${options.stack}\n`);
  process.exit(2);
}

function serveGrpcJs(): void {
  // kvs2's server options for its default limits.
  const defaults = parseConfig({});
  const server = new Server(
    grpcServerOptions({ maxRequestBytes: defaults.maxRequestBytes, maxReplyBytes: defaults.limits.maxReplyBytes }),
  );
  server.addService(Kvs2Service, {
    get: (_call: ServerUnaryCall<GetRequest, GetReply>, callback: sendUnaryData<GetReply>) => callback(null, getReply),
    multiGet: (call: ServerUnaryCall<MultiGetRequest, MultiGetReply>, callback: sendUnaryData<MultiGetReply>) =>
      callback(null, multiGetReply(call.request.keys)),
    set: (_call: ServerUnaryCall<SetRequest, SetReply>, callback: sendUnaryData<SetReply>) => callback(null, setReply),
  });

  server.bindAsync(options.listen, ServerCredentials.createInsecure(), (error, port) => {
    if (error) {
      process.stderr.write(`noop-server: cannot listen on ${options.listen}: ${error.message}\n`);
      process.exit(1);
    }
    announce(port);
  });

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => server.tryShutdown(() => process.exit(0)));
  }
}
