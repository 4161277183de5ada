import { fileURLToPath } from 'node:url';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { type DescriptorProto, FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import type { Server } from '@grpc/grpc-js';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { protoPath as healthProtoPath } from 'grpc-health-check';

/** proto/kvs2.proto at the package root, from dist/src/api/ at run time. */
export const KVS2_PROTO_PATH = fileURLToPath(new URL('../../../proto/kvs2.proto', import.meta.url));

/** gRPC server reflection, so that grpcurl-style tools work without the proto files. */
export function addReflection(server: Server): void {
  const definitions = withStandardMapEntryNames(loadSync([KVS2_PROTO_PATH, healthProtoPath], { keepCase: true }));
  new ReflectionService(definitions).addToServer(server);
}

/**
 * protobufjs (under @grpc/proto-loader) names the synthetic message of a map field `Statuses` instead of
 * protoc's `StatusesEntry`, and strict reflection clients (grpcurl, Go's protobuf) then reject the whole
 * file: health.proto's `map<string, HealthCheckResponse> statuses` made Health/Check uncallable. We rename
 * the entries in the serialized descriptors before reflection serves them.
 */
function withStandardMapEntryNames(definitions: PackageDefinition): PackageDefinition {
  const fixed = new Map<Buffer, Buffer>();
  const fix = (bytes: Buffer): Buffer => {
    let result = fixed.get(bytes);
    if (result === undefined) {
      const file = fromBinary(FileDescriptorProtoSchema, bytes);
      for (const message of file.messageType) renameMapEntries(message);
      result = Buffer.from(toBinary(FileDescriptorProtoSchema, file));
      fixed.set(bytes, result);
    }
    return result;
  };
  const out: PackageDefinition = {};
  for (const [name, definition] of Object.entries(definitions)) {
    const protos = (definition as { fileDescriptorProtos?: unknown }).fileDescriptorProtos;
    out[name] = Array.isArray(protos)
      ? ({ ...definition, fileDescriptorProtos: (protos as Buffer[]).map(fix) } as typeof definition)
      : definition;
  }
  return out;
}

function renameMapEntries(message: DescriptorProto): void {
  for (const nested of message.nestedType) {
    renameMapEntries(nested);
    if (!nested.options?.mapEntry || nested.name.endsWith('Entry')) continue;
    const oldName = nested.name;
    nested.name = `${oldName}Entry`;
    for (const field of message.field) {
      if (field.typeName === oldName) field.typeName = nested.name;
      else if (field.typeName.endsWith(`.${oldName}`)) field.typeName = `${field.typeName}Entry`;
    }
  }
}
