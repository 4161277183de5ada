import type { FieldSpec, MessageSchema } from './kvs2-request-schema.js';
import { WireType } from './protobuf-wire.js';

/**
 * The tests' own judge of a request body, independent of the server's decoder: whether it is a valid
 * protobuf encoding of its message and, if it is, what it says.
 *
 * Valid: every field is well formed; unknown field numbers (1 .. 2^29-1, wire type 0, 1, 2 or 5) are
 * skipped, as proto3 parsers do; a repeated singular field keeps its last value.
 * Invalid: field number 0 or >= 2^29, wire types 3, 4, 6 and 7 (proto3 has no groups), a varint of more
 * than 10 bytes, a varint, fixed field or length running past the end, a known field with a wire type
 * its type never has, or an invalid nested message.
 * Unspecified: a 10-byte varint with bits past 64 (parsers differ on whether to drop them); the fuzz
 * leaves such bodies out rather than guess what they mean.
 */

export interface DecodedMessage {
  /** Singular fields: the last value seen (bytes as Buffer, varints as bigint). */
  readonly scalars: Map<string, Buffer | bigint>;
  /** Repeated fields, in order; nested messages decoded. */
  readonly lists: Map<string, Array<Buffer | DecodedMessage>>;
}

export type Verdict =
  | { readonly kind: 'valid'; readonly message: DecodedMessage }
  | { readonly kind: 'invalid'; readonly why: string }
  | { readonly kind: 'unspecified'; readonly why: string };

class Refusal extends Error {
  constructor(
    readonly kind: 'invalid' | 'unspecified',
    why: string,
  ) {
    super(why);
  }
}

export function judge(schema: MessageSchema, body: Buffer): Verdict {
  try {
    return { kind: 'valid', message: decode(schema, body) };
  } catch (error) {
    if (error instanceof Refusal) return { kind: error.kind, why: error.message };
    throw error;
  }
}

/** Convenience readers of a decoded message. */
export function bytesOf(message: DecodedMessage, name: string): Buffer {
  const value = message.scalars.get(name);
  return value instanceof Buffer ? value : Buffer.alloc(0);
}

export function varintOf(message: DecodedMessage, name: string): bigint {
  const value = message.scalars.get(name);
  return typeof value === 'bigint' ? value : 0n;
}

export function listOf(message: DecodedMessage, name: string): Array<Buffer | DecodedMessage> {
  return message.lists.get(name) ?? [];
}

const TWO_POW_29 = 1n << 29n;

function decode(schema: MessageSchema, bytes: Buffer): DecodedMessage {
  const scalars = new Map<string, Buffer | bigint>();
  const lists = new Map<string, Array<Buffer | DecodedMessage>>();
  const cursor = { at: 0 };
  while (cursor.at < bytes.length) {
    const key = readVarint(bytes, cursor, 'field key');
    const fieldNumber = key >> 3n;
    const wireType = Number(key & 7n);
    if (fieldNumber === 0n) throw new Refusal('invalid', `field number 0 at byte ${cursor.at}`);
    if (fieldNumber >= TWO_POW_29) throw new Refusal('invalid', `field number ${fieldNumber} is >= 2^29`);
    if (wireType === WireType.START_GROUP || wireType === WireType.END_GROUP || wireType > WireType.I32) {
      throw new Refusal('invalid', `wire type ${wireType} (field ${fieldNumber})`);
    }
    const spec = schema.fields.find((f) => BigInt(f.number) === fieldNumber);
    const payload = readPayload(bytes, cursor, wireType, fieldNumber);
    if (spec === undefined) continue;
    const expected = spec.kind === 'varint' ? WireType.VARINT : WireType.LEN;
    if (wireType !== expected) {
      throw new Refusal('invalid', `${schema.name}.${spec.name} with wire type ${wireType}, not ${expected}`);
    }
    store(spec, payload, scalars, lists);
  }
  return { scalars, lists };
}

function store(
  spec: FieldSpec,
  payload: Buffer | bigint,
  scalars: Map<string, Buffer | bigint>,
  lists: Map<string, Array<Buffer | DecodedMessage>>,
): void {
  const value = typeof spec.kind === 'object' ? decode(spec.kind, payload as Buffer) : payload;
  if (!spec.repeated) {
    scalars.set(spec.name, value as Buffer | bigint);
    return;
  }
  const list = lists.get(spec.name) ?? [];
  list.push(value as Buffer | DecodedMessage);
  lists.set(spec.name, list);
}

function readPayload(bytes: Buffer, cursor: { at: number }, wireType: number, field: bigint): Buffer | bigint {
  switch (wireType) {
    case WireType.VARINT:
      return readVarint(bytes, cursor, `field ${field}`);
    case WireType.I64:
      return take(bytes, cursor, 8n, field);
    case WireType.I32:
      return take(bytes, cursor, 4n, field);
    default:
      return take(bytes, cursor, readVarint(bytes, cursor, `length of field ${field}`), field);
  }
}

function take(bytes: Buffer, cursor: { at: number }, length: bigint, field: bigint): Buffer {
  if (length > BigInt(bytes.length - cursor.at)) {
    throw new Refusal('invalid', `field ${field} needs ${length} bytes, ${bytes.length - cursor.at} are left`);
  }
  const slice = bytes.subarray(cursor.at, cursor.at + Number(length));
  cursor.at += Number(length);
  return slice;
}

function readVarint(bytes: Buffer, cursor: { at: number }, what: string): bigint {
  let value = 0n;
  for (let i = 0; ; i++) {
    if (cursor.at >= bytes.length) throw new Refusal('invalid', `${what}: varint runs past the end`);
    if (i === 10) throw new Refusal('invalid', `${what}: varint longer than 10 bytes`);
    const byte = bytes[cursor.at++] as number;
    if (i === 9 && (byte & 0x7f) > 1) throw new Refusal('unspecified', `${what}: 10-byte varint past 64 bits`);
    value |= BigInt(byte & 0x7f) << BigInt(7 * i);
    if ((byte & 0x80) === 0) return value;
  }
}
