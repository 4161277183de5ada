import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { credentials, type GrpcObject, loadPackageDefinition, type ServiceClientConstructor } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { tempDir } from '../support/paths.js';
import { ServerProcess } from '../support/server-process.js';

interface ReflectionReply {
  list_services_response?: { service: Array<{ name: string }> };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_message: string };
}

/** The standard reflection protocol (what grpcurl speaks), with the proto that @grpc/reflection ships. */
function reflectionClient(address: string) {
  const protoDir = join(dirname(createRequire(import.meta.url).resolve('@grpc/reflection')), '..', 'proto');
  const definition = loadSync('grpc/reflection/v1/reflection.proto', { keepCase: true, includeDirs: [protoDir] });
  const v1 = (((loadPackageDefinition(definition).grpc as GrpcObject).reflection as GrpcObject).v1 as GrpcObject)
    .ServerReflection as ServiceClientConstructor;
  const client = new v1(address, credentials.createInsecure()) as unknown as {
    ServerReflectionInfo(): NodeJS.EventEmitter & { write(m: object): void; end(): void };
    close(): void;
  };
  const ask = (request: object): Promise<ReflectionReply> =>
    new Promise((resolve, reject) => {
      const call = client.ServerReflectionInfo();
      call.once('data', (reply: ReflectionReply) => {
        resolve(reply);
        call.end();
      });
      call.once('error', reject);
      call.write(request);
    });
  return { ask, close: () => client.close() };
}

describe('gRPC server reflection', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let server: ServerProcess;
  before(async () => {
    dir = await tempDir('reflection');
    server = await ServerProcess.start({ dataDir: dir.path });
  });
  after(async () => {
    await server.stop();
    await dir.remove();
  });

  test('lists kvs2.Kvs2 and the health service', async () => {
    const reflection = reflectionClient(server.address);
    const reply = await reflection.ask({ list_services: '' });
    const names = reply.list_services_response?.service.map((s) => s.name) ?? [];
    assert.ok(names.includes('kvs2.Kvs2'), names.join());
    assert.ok(names.includes('grpc.health.v1.Health'), names.join());
    reflection.close();
  });

  test('describes kvs2.Kvs2 with (at least) the seed RPCs', async () => {
    const reflection = reflectionClient(server.address);
    const reply = await reflection.ask({ file_containing_symbol: 'kvs2.Kvs2' });
    const files = (reply.file_descriptor_response?.file_descriptor_proto ?? []).map((b) =>
      fromBinary(FileDescriptorProtoSchema, b),
    );
    const kvs2 = files.find((f) => f.package === 'kvs2');
    assert.ok(kvs2);
    const methods = kvs2.service[0]?.method.map((m) => m.name) ?? [];
    for (const seed of ['Get', 'MultiGet', 'Set']) assert.ok(methods.includes(seed), `${seed} is missing`);
    reflection.close();
  });

  test('serves health.proto with protoc-style map entry names, so strict clients such as grpcurl accept it', async () => {
    const reflection = reflectionClient(server.address);
    const reply = await reflection.ask({ file_containing_symbol: 'grpc.health.v1.Health' });
    const files = (reply.file_descriptor_response?.file_descriptor_proto ?? []).map((b) =>
      fromBinary(FileDescriptorProtoSchema, b),
    );
    const health = files.find((f) => f.package === 'grpc.health.v1');
    const list = health?.messageType.find((m) => m.name === 'HealthListResponse');
    assert.ok(list);
    assert.deepEqual(
      list.nestedType.map((n) => n.name),
      ['StatusesEntry'],
    );
    assert.match(list.field[0]?.typeName ?? '', /StatusesEntry$/);
    reflection.close();
  });
});
