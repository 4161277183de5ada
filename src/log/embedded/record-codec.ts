import { Kvs2Error } from '../../errors.js';

/**
 * How the embedded log encodes one record (inside a frame, see frame-codec.ts; the earlier format stored it
 * as an LMDB value):
 *   byte 0       flags (bit 0: tombstone)
 *   bytes 1..4   key length, unsigned 32-bit big-endian
 *   then         the key, then the value (absent for a tombstone)
 */
const TOMBSTONE = 1;
const HEADER_BYTES = 5;

export interface DecodedRecord {
  readonly key: Buffer;
  readonly value: Buffer | null;
}

export function encodeRecord(key: Buffer, value: Buffer | null): Buffer {
  const out = Buffer.allocUnsafe(recordBytes(key, value));
  writeRecord(out, 0, key, value);
  return out;
}

/** Bytes the encoded record takes. */
export function recordBytes(key: Buffer, value: Buffer | null): number {
  return HEADER_BYTES + key.length + (value === null ? 0 : value.length);
}

/** Encodes the record into `out` at `at` (room for recordBytes() is there), returning where it ends. */
export function writeRecord(out: Buffer, at: number, key: Buffer, value: Buffer | null): number {
  out[at] = value === null ? TOMBSTONE : 0;
  out.writeUInt32BE(key.length, at + 1);
  key.copy(out, at + HEADER_BYTES);
  if (value === null) return at + HEADER_BYTES + key.length;
  value.copy(out, at + HEADER_BYTES + key.length);
  return at + HEADER_BYTES + key.length + value.length;
}

/**
 * The returned key and value are views into `encoded`; they stay valid as long as it does. A record that
 * does not decode is corruption on disk, which no retry mends: INCONSISTENT_STATE, so the node stops loudly.
 */
export function decodeRecord(encoded: Buffer, offset: number): DecodedRecord {
  const corrupt = (why: string): Kvs2Error =>
    new Kvs2Error('INCONSISTENT_STATE', `the embedded log's record at offset ${offset} is corrupt: ${why}`);
  if (encoded.length < HEADER_BYTES) throw corrupt(`${encoded.length} bytes is shorter than its header`);
  if ((encoded[0] ?? 0) & ~TOMBSTONE) throw corrupt(`unknown flags ${encoded[0]}`);
  const keyLength = encoded.readUInt32BE(1);
  const keyEnd = HEADER_BYTES + keyLength;
  if (keyEnd > encoded.length) throw corrupt('its key runs past its end');
  const key = encoded.subarray(HEADER_BYTES, keyEnd);
  const isTombstone = ((encoded[0] ?? 0) & TOMBSTONE) !== 0;
  return { key, value: isTombstone ? null : encoded.subarray(keyEnd) };
}
