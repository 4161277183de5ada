import { Kvs2Error } from '../../errors.js';

/**
 * How the embedded log stores one record as an LMDB value:
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
  const valueLength = value === null ? 0 : value.length;
  const out = Buffer.allocUnsafe(HEADER_BYTES + key.length + valueLength);
  out[0] = value === null ? TOMBSTONE : 0;
  out.writeUInt32BE(key.length, 1);
  key.copy(out, HEADER_BYTES);
  if (value !== null) value.copy(out, HEADER_BYTES + key.length);
  return out;
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
