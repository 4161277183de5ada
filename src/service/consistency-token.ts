import { createHash } from 'node:crypto';
import { Kvs2Error } from '../errors.js';
import type { Offsets } from '../offsets.js';

/**
 * A consistency token names positions in one log: for each partition, the offset a node must have
 * applied up to (exclusive) to have seen the writes the token stands for. Clients treat it as opaque
 * bytes; kvs2 merges tokens by taking the furthest position per partition.
 *
 * Layout (version 1):
 *   byte 0        version (1)
 *   bytes 1..8    the first 8 bytes of SHA-256 of the log's identity, so a token from another log
 *                 (another cluster, or the topic before it was recreated) is refused, not misread
 *   then          varint count, then count × (varint partition, varint offset)
 */
const VERSION = 1;
const LOG_TAG_BYTES = 8;

export interface ConsistencyToken {
  readonly logTag: Buffer;
  readonly offsets: Offsets;
}

/** Computes the 8-byte tag of a log identity once; tokens carry it. */
export function logTagOf(logIdentity: string): Buffer {
  return createHash('sha256').update(logIdentity).digest().subarray(0, LOG_TAG_BYTES);
}

export function encodeToken(logTag: Buffer, offsets: Offsets): Buffer {
  // Sized first, then written straight into one buffer: every mutation of a Write gets a token of its own
  // (docs/benchmarks.md, "Why these constants").
  const entries = offsets.size === 1 ? offsets : new Map([...offsets].sort((a, b) => a[0] - b[0]));
  let size = 1 + LOG_TAG_BYTES + varintSize(entries.size);
  for (const [partition, offset] of entries) size += varintSize(partition) + varintSize(offset);
  const token = Buffer.allocUnsafe(size);
  token[0] = VERSION;
  logTag.copy(token, 1, 0, LOG_TAG_BYTES);
  let at = writeVarint(token, 1 + LOG_TAG_BYTES, entries.size);
  for (const [partition, offset] of entries) {
    at = writeVarint(token, at, partition);
    at = writeVarint(token, at, offset);
  }
  return token;
}

/** Decodes a token, or throws INVALID_ARGUMENT saying what is wrong with it. */
export function decodeToken(bytes: Buffer, what = 'token'): ConsistencyToken {
  const invalid = (why: string): Kvs2Error =>
    new Kvs2Error('INVALID_ARGUMENT', `${what} is not a kvs2 consistency token: ${why}`);
  if (bytes.length < 1 + LOG_TAG_BYTES + 1) throw invalid(`${bytes.length} bytes is too short`);
  if (bytes[0] !== VERSION) throw invalid(`unknown version ${bytes[0]}`);
  const logTag = bytes.subarray(1, 1 + LOG_TAG_BYTES);
  const cursor = { at: 1 + LOG_TAG_BYTES };
  const count = readVarint(bytes, cursor, invalid);
  if (count > 100_000) throw invalid(`${count} partitions`);
  const offsets = new Map<number, number>();
  for (let i = 0; i < count; i++) {
    const partition = readVarint(bytes, cursor, invalid);
    const offset = readVarint(bytes, cursor, invalid);
    offsets.set(partition, Math.max(offset, offsets.get(partition) ?? 0));
  }
  if (cursor.at !== bytes.length) throw invalid('trailing bytes');
  return { logTag: Buffer.from(logTag), offsets };
}

/**
 * Merges tokens into the offsets a read must wait for. Every token must come from the log this node
 * reads; one from another log could never be satisfied meaningfully.
 */
export function mergeTokens(tokens: readonly Buffer[], expectedLogTag: Buffer): Map<number, number> {
  const merged = new Map<number, number>();
  tokens.forEach((bytes, i) => {
    const token = decodeToken(bytes, tokens.length === 1 ? 'after' : `after[${i}]`);
    if (!token.logTag.equals(expectedLogTag)) {
      throw new Kvs2Error(
        'TOKEN_FROM_OTHER_LOG',
        `${tokens.length === 1 ? 'after' : `after[${i}]`} names positions in another log (another cluster or ` +
          'a topic since deleted and recreated); it cannot be waited for here',
      );
    }
    for (const [partition, offset] of token.offsets) {
      if (offset > (merged.get(partition) ?? 0)) merged.set(partition, offset);
    }
  });
  return merged;
}

function varintSize(value: number): number {
  let size = 1;
  for (let v = value; v >= 0x80; v = Math.floor(v / 0x80)) size++;
  return size;
}

/** Writes `value` (a safe non-negative integer) at `at`; returns where the next byte goes. */
function writeVarint(out: Buffer, at: number, value: number): number {
  let v = value;
  let i = at;
  while (v >= 0x80) {
    out[i++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  out[i++] = v;
  return i;
}

function readVarint(bytes: Buffer, cursor: { at: number }, invalid: (why: string) => Kvs2Error): number {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 8; i++) {
    const byte = bytes[cursor.at++];
    if (byte === undefined) throw invalid('truncated');
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) {
      if (!Number.isSafeInteger(value)) throw invalid('number out of range');
      return value;
    }
    scale *= 0x80;
  }
  throw invalid('number out of range');
}
