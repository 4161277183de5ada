import type { GetResult, MultiGetResult } from '../service/requests.js';

/**
 * A reply already in its wire form: the definition's serializer sends these bytes as they are
 * (kvs2-definition.ts). For the replies whose generic encoding costs most: MultiGet's (one object and a
 * writer's copies per part) and Get's (the most frequent call: the generated encoder's writer and its own
 * ArrayBuffer per reply are garbage each collection must sweep, docs/benchmarks.md "The young generation").
 */
export class EncodedReply {
  constructor(readonly bytes: Buffer) {}
}

// Tags of kvs2.proto: (field number << 3) | wire type.
const GET_STATUS = (1 << 3) | 0;
const GET_DATA = (2 << 3) | 2;
const GET_TOKEN = (3 << 3) | 2;
const GET_VERSION = (4 << 3) | 0;
const REPLY_PARTS = (1 << 3) | 2;
const REPLY_TOKEN = (2 << 3) | 2;
const PART_KEY = (1 << 3) | 2;
const PART_STATUS = (2 << 3) | 0;
const PART_DATA = (3 << 3) | 2;
const PART_VERSION = (4 << 3) | 0;
/** ReadStatus.NOT_FOUND. */
const NOT_FOUND = 1;

/**
 * GetReply in protobuf's wire form, in one Buffer (from Node's pool: replies are small), as the generated
 * encoder writes it: fields in order, defaults (OK status, empty data and token, version 0) left out.
 */
export function encodeGetReply(result: GetResult): EncodedReply {
  const { value, version, token } = result;
  let size = token.length > 0 ? 1 + varintSize(token.length) + token.length : 0;
  if (value === undefined) {
    size += 2;
  } else {
    if (value.length > 0) size += 1 + varintSize(value.length) + value.length;
    if (version > 0) size += 1 + varintSize(version);
  }
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  if (value === undefined) {
    out[at++] = GET_STATUS;
    out[at++] = NOT_FOUND;
  } else {
    at = writeBytes(out, at, GET_DATA, value);
  }
  at = writeBytes(out, at, GET_TOKEN, token);
  if (value !== undefined && version > 0) {
    out[at++] = GET_VERSION;
    at = writeVarint(out, at, version);
  }
  return new EncodedReply(out);
}

/**
 * MultiGetReply in protobuf's wire form, written straight into one Buffer: the generated encoder builds an
 * object per part and a writer that copies each field through chunks of its own, which costs as much as the
 * hundred store lookups of a MultiGet of 100 (docs/benchmarks.md). Fields are written as the generated
 * encoder writes them: in field order, default values (OK status, empty data, version 0) left out, so the
 * bytes are the same. Versions are below 2^53 (offsets + 1), so varints are computed without BigInt.
 */
export function encodeMultiGetReply(keys: readonly Buffer[], result: MultiGetResult): EncodedReply {
  const { values, versions, token } = result;
  const partSizes = new Array<number>(keys.length);
  let size = 0;
  for (let i = 0; i < keys.length; i++) {
    const partSize = partSizeOf(keys[i] as Buffer, values[i], versions[i] ?? 0);
    partSizes[i] = partSize;
    size += 1 + varintSize(partSize) + partSize;
  }
  if (token.length > 0) size += 1 + varintSize(token.length) + token.length;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i] as Buffer;
    const value = values[i];
    out[at++] = REPLY_PARTS;
    at = writeVarint(out, at, partSizes[i] as number);
    at = writeBytes(out, at, PART_KEY, key);
    if (value === undefined) {
      out[at++] = PART_STATUS;
      out[at++] = NOT_FOUND;
      continue;
    }
    if (value.length > 0) at = writeBytes(out, at, PART_DATA, value);
    const version = versions[i] ?? 0;
    if (version > 0) {
      out[at++] = PART_VERSION;
      at = writeVarint(out, at, version);
    }
  }
  if (token.length > 0) at = writeBytes(out, at, REPLY_TOKEN, token);
  return new EncodedReply(out);
}

function partSizeOf(key: Buffer, value: Buffer | undefined, version: number): number {
  let size = key.length > 0 ? 1 + varintSize(key.length) + key.length : 0;
  if (value === undefined) return size + 2;
  if (value.length > 0) size += 1 + varintSize(value.length) + value.length;
  if (version > 0) size += 1 + varintSize(version);
  return size;
}

function writeBytes(out: Buffer, at: number, tag: number, bytes: Buffer): number {
  if (bytes.length === 0) return at;
  out[at++] = tag;
  const start = writeVarint(out, at, bytes.length);
  return start + bytes.copy(out, start);
}

/** Bytes of a varint of a non-negative integer below 2^53. */
function varintSize(n: number): number {
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function writeVarint(out: Buffer, at: number, n: number): number {
  while (n >= 128) {
    out[at++] = (n % 128) | 128;
    n = Math.floor(n / 128);
  }
  out[at++] = n;
  return at;
}
