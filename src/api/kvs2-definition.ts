import { createFileRegistry, fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import type { ServiceDefinition } from '@grpc/grpc-js';
import { Kvs2Service, SnapshotChunk } from '../gen/kvs2.js';
import { readDescriptorSet } from './descriptor-set.js';
import { EncodedReply } from './reply-encoding.js';
import { findMalformation, type WireShape, wireShapeOf } from './wire-format.js';

/** A request body that is not a valid encoding of its message: the handler answers INVALID_ARGUMENT. */
export class MalformedRequest {
  constructor(readonly reason: string) {}
}

/** What a handler receives: the decoded request, or why its body was refused. */
export type Received<T> = T | MalformedRequest;

/**
 * The kvs2.Kvs2 service definition for the server: the generated one, with each request checked by the
 * strict wire-format check (wire-format.ts) before it is decoded. A malformed body becomes a
 * MalformedRequest instead of an exception, since grpc-js would answer a throwing deserializer INTERNAL.
 */
export function strictKvs2Definition(): ServiceDefinition {
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readDescriptorSet()));
  const service = registry.getService('kvs2.Kvs2');
  if (service === undefined) throw new Error('the embedded descriptors lack kvs2.Kvs2; run npm run generate');
  const shapes = new Map<string, WireShape>();
  const known = new Map<string, WireShape>();
  for (const method of service.methods) shapes.set(`/kvs2.Kvs2/${method.name}`, wireShapeOf(method.input, known));

  const definition: Record<string, ServiceDefinition[string]> = {};
  for (const [name, method] of Object.entries(Kvs2Service)) {
    const shape = shapes.get(method.path);
    if (shape === undefined) throw new Error(`the embedded descriptors lack ${method.path}; run npm run generate`);
    const decode: (bytes: Buffer) => unknown = method.requestDeserialize;
    const encode: (reply: never) => Buffer = method.responseSerialize;
    definition[name] = {
      ...method,
      // A handler may answer with bytes already encoded (reply-encoding.ts).
      responseSerialize: (reply: unknown): Buffer =>
        reply instanceof EncodedReply ? reply.bytes : encode(reply as never),
      requestDeserialize: (bytes: Buffer): unknown => {
        const malformation = findMalformation(bytes, shape);
        if (malformation !== null) return new MalformedRequest(malformation);
        try {
          return decode(bytes);
        } catch (error) {
          // A well-formed body the generated decoder still cannot take: a 64-bit integer beyond 2^53 for a
          // field it reads as a JavaScript number (SnapshotRequest.max_bytes_per_second).
          return new MalformedRequest(error instanceof Error ? error.message : String(error));
        }
      },
      ...(name === 'snapshot' ? { responseSerialize: serializeSnapshotChunk } : {}),
    };
  }
  return definition;
}

/**
 * SnapshotChunk's encoding (field 1, `data`, length-delimited), byte for byte what the generated encoder
 * writes, in one allocation and one copy: a store image streams hundreds of MiB in 1 MiB chunks, and the
 * generic writer grows and copies its buffer for each (a second of CPU and most of the garbage collection
 * on the sender for 200 MiB here).
 */
function serializeSnapshotChunk(chunk: SnapshotChunk): Buffer {
  // The one message of a direct transfer: small, once per call.
  if (chunk.directTransfer !== undefined) return Buffer.from(SnapshotChunk.encode(chunk).finish());
  const data = chunk.data;
  if (data.length === 0) return Buffer.alloc(0);
  let lengthBytes = 1;
  for (let n = data.length; n >= 0x80; n = Math.floor(n / 128)) lengthBytes++;
  const out = Buffer.allocUnsafe(1 + lengthBytes + data.length);
  out[0] = 0x0a;
  let at = 1;
  let n = data.length;
  while (n >= 0x80) {
    out[at++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  out[at++] = n;
  out.set(data, at);
  return out;
}
