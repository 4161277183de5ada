/**
 * A protobuf wire encoder written by hand on purpose: unlike a protobuf library it will produce encodings
 * no valid message has (field number 0, field numbers of 2^29 and more, group and reserved wire types,
 * varints of more than 10 bytes, lengths past the end), which is what hostile-input tests need to send.
 */

export const WireType = {
  VARINT: 0,
  I64: 1,
  LEN: 2,
  START_GROUP: 3,
  END_GROUP: 4,
  I32: 5,
} as const;

/** The stray END_GROUP byte of issue 11: field 1, wire type 4. */
export const END_GROUP_BYTE = 0x0c;

/**
 * A base-128 varint of `value` (taken as unsigned). With `length` longer than the shortest form, it is
 * padded with continuation bytes: still the same value up to 10 bytes, an invalid varint beyond.
 */
export function varint(value: bigint | number, length?: number): Buffer {
  let rest = BigInt(value);
  if (rest < 0n) rest = BigInt.asUintN(64, rest);
  const bytes: number[] = [];
  do {
    bytes.push(Number(rest & 0x7fn));
    rest >>= 7n;
  } while (rest > 0n);
  if (length !== undefined) {
    if (length < bytes.length) throw new Error(`varint of ${value} needs ${bytes.length} bytes, not ${length}`);
    while (bytes.length < length) bytes.push(0);
  }
  for (let i = 0; i < bytes.length - 1; i++) bytes[i] = (bytes[i] as number) | 0x80;
  return Buffer.from(bytes);
}

/** A field key: (field number << 3) | wire type, with no check of either. */
export function tag(field: bigint | number, wireType: number): Buffer {
  return varint((BigInt(field) << 3n) | BigInt(wireType));
}

export function varintField(field: bigint | number, value: bigint | number | boolean): Buffer {
  return Buffer.concat([tag(field, WireType.VARINT), varint(typeof value === 'boolean' ? Number(value) : value)]);
}

export function bytesField(field: bigint | number, content: Buffer | string): Buffer {
  const bytes = typeof content === 'string' ? Buffer.from(content) : content;
  return Buffer.concat([tag(field, WireType.LEN), varint(bytes.length), bytes]);
}

export function fixed32Field(field: bigint | number, value: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32LE(value >>> 0);
  return Buffer.concat([tag(field, WireType.I32), payload]);
}

export function fixed64Field(field: bigint | number, value: bigint): Buffer {
  const payload = Buffer.alloc(8);
  payload.writeBigUInt64LE(BigInt.asUintN(64, value));
  return Buffer.concat([tag(field, WireType.I64), payload]);
}

/** A length-delimited field whose declared length is `declaredLength`, whatever `content` really holds. */
export function lyingBytesField(field: bigint | number, declaredLength: bigint | number, content: Buffer): Buffer {
  return Buffer.concat([tag(field, WireType.LEN), varint(declaredLength), content]);
}

/** The gRPC message frame: a 0 (uncompressed) flag, a 4-byte big-endian length, the message. */
export function grpcFrame(message: Buffer): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}
