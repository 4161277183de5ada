import { readFileSync } from 'node:fs';

/**
 * The FileDescriptorSet that `npm run generate` builds with buf from proto/ (kvs2.proto and the
 * grpc.health.v1 health.proto), at the package root, from dist/src/api/ at run time: what reflection
 * serves and what the strict request check (kvs2-definition.ts) reads the messages' shapes from.
 */
const DESCRIPTOR_SET_PATH = new URL('../../../src/gen/descriptor-set.binpb', import.meta.url);

export function readDescriptorSet(): Buffer {
  return readFileSync(DESCRIPTOR_SET_PATH);
}
