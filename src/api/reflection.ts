import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import type { Server } from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { readDescriptorSet } from './descriptor-set.js';

/** google.protobuf.FileDescriptorSet's only field: `repeated FileDescriptorProto file = 1`. */
const FILE_FIELD = 1;

type PackageDefinition = ConstructorParameters<typeof ReflectionService>[0];

/** gRPC server reflection, so that grpcurl-style tools work without the proto files. */
export function addReflection(server: Server): void {
  const fileDescriptorProtos = filesOf(readDescriptorSet());
  // ReflectionService reads only `fileDescriptorProtos` from each entry of a proto-loader package
  // definition; one entry that holds every file serves them all, exactly as protoc and buf encode them.
  const definition: PackageDefinition = {
    'kvs2.descriptors': { format: 'Protocol Buffer 3 DescriptorProto', type: {}, fileDescriptorProtos },
  };
  new ReflectionService(definition).addToServer(server);
}

/** The encoded FileDescriptorProtos of a FileDescriptorSet, each as buf wrote it. */
function filesOf(set: Buffer): Buffer[] {
  const files: Buffer[] = [];
  const reader = new BinaryReader(set);
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === FILE_FIELD && wireType === WireType.LengthDelimited) files.push(Buffer.from(reader.bytes()));
    else reader.skip(wireType, field);
  }
  return files;
}
