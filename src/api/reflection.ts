import { fileURLToPath } from 'node:url';
import type { Server } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { protoPath as healthProtoPath } from 'grpc-health-check';

/** proto/kvs2.proto at the package root, from dist/src/api/ at run time. */
export const KVS2_PROTO_PATH = fileURLToPath(new URL('../../../proto/kvs2.proto', import.meta.url));

/** gRPC server reflection, so that grpcurl-style tools work without the proto files. */
export function addReflection(server: Server): void {
  const definitions = loadSync([KVS2_PROTO_PATH, healthProtoPath], { keepCase: true });
  new ReflectionService(definitions).addToServer(server);
}
