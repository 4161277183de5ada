import { crc32 } from 'node:zlib';
import { Kvs2Error } from '../../errors.js';
import { decodeRecord, recordBytes, writeRecord } from './record-codec.js';

/**
 * How the embedded log stores records in a segment file: one frame per group commit, so that a crash can
 * tear at most the last frame (nothing after it was written before its sync returned).
 *
 *   bytes 0..3   body length, unsigned 32-bit big-endian
 *   bytes 4..7   CRC-32 of the body
 *   body:
 *     bytes 0..7   offset of the first record (high and low 32 bits, big-endian)
 *     bytes 8..11  record count
 *     then, per record: its length (unsigned 32-bit) and the record (record-codec.ts)
 *
 * Offsets are dense inside a frame; frames follow each other in offset order.
 */
export const FRAME_HEADER_BYTES = 8;
const BODY_HEADER_BYTES = 12;
const TWO_32 = 2 ** 32;

export interface FrameRecord {
  readonly key: Buffer;
  readonly value: Buffer | null;
}

/** Encodes the records straight into the frame: no buffer of their own. */
export function encodeFrame(baseOffset: number, records: readonly FrameRecord[]): Buffer {
  let bodyLength = BODY_HEADER_BYTES;
  for (const record of records) bodyLength += 4 + recordBytes(record.key, record.value);
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + bodyLength);
  frame.writeUInt32BE(bodyLength, 0);
  let at = FRAME_HEADER_BYTES;
  frame.writeUInt32BE(Math.floor(baseOffset / TWO_32), at);
  frame.writeUInt32BE(baseOffset % TWO_32, at + 4);
  frame.writeUInt32BE(records.length, at + 8);
  at += BODY_HEADER_BYTES;
  for (const record of records) {
    const end = writeRecord(frame, at + 4, record.key, record.value);
    frame.writeUInt32BE(end - at - 4, at);
    at = end;
  }
  frame.writeUInt32BE(crc32(frame.subarray(FRAME_HEADER_BYTES)), 4);
  return frame;
}

/** What a frame says about itself once its checksum holds. */
export interface FrameInfo {
  readonly baseOffset: number;
  readonly count: number;
  /** Header included. */
  readonly bytes: number;
}

/** Why the bytes at a position are not a whole, intact frame. */
export type FrameFault =
  | { readonly kind: 'short'; readonly why: string }
  | { readonly kind: 'damaged'; readonly why: string; readonly bytes: number };

/**
 * Checks the frame at `at` in `bytes`: `short` when the bytes end before the frame does (a write cut off),
 * `damaged` when a whole frame is there but does not hold together.
 */
export function checkFrame(bytes: Buffer, at: number): FrameInfo | FrameFault {
  if (bytes.length - at < FRAME_HEADER_BYTES) return { kind: 'short', why: 'its header is cut off' };
  const bodyLength = bytes.readUInt32BE(at);
  const end = at + FRAME_HEADER_BYTES + bodyLength;
  if (end > bytes.length) return { kind: 'short', why: `its ${bodyLength}-byte body is cut off` };
  const bytesTotal = FRAME_HEADER_BYTES + bodyLength;
  if (bodyLength < BODY_HEADER_BYTES) {
    return { kind: 'damaged', why: `a ${bodyLength}-byte body is shorter than its header`, bytes: bytesTotal };
  }
  const body = bytes.subarray(at + FRAME_HEADER_BYTES, end);
  if (crc32(body) !== bytes.readUInt32BE(at + 4)) {
    return { kind: 'damaged', why: 'its checksum does not match', bytes: bytesTotal };
  }
  return {
    baseOffset: body.readUInt32BE(0) * TWO_32 + body.readUInt32BE(4),
    count: body.readUInt32BE(8),
    bytes: bytesTotal,
  };
}

export function isFrameFault(checked: FrameInfo | FrameFault): checked is FrameFault {
  return 'kind' in checked;
}

/** Called for each record of a frame; false stops the decoding. */
export type FrameRecordVisitor = (offset: number, key: Buffer, value: Buffer | null, bytes: number) => boolean;

/**
 * Visits the records of an intact frame (checked with checkFrame); keys and values are views into `frame`.
 * A frame whose records do not add up is corruption on disk, which no retry mends: INCONSISTENT_STATE.
 */
export function decodeFrameRecords(frame: Buffer, info: FrameInfo, visit: FrameRecordVisitor): void {
  let at = FRAME_HEADER_BYTES + BODY_HEADER_BYTES;
  for (let i = 0; i < info.count; i++) {
    const offset = info.baseOffset + i;
    if (at + 4 > frame.length) throw corruptFrame(info, `record ${offset} starts past its end`);
    const length = frame.readUInt32BE(at);
    const end = at + 4 + length;
    if (end > frame.length) throw corruptFrame(info, `record ${offset} runs past its end`);
    const { key, value } = decodeRecord(frame.subarray(at + 4, end), offset);
    if (!visit(offset, key, value, length)) return;
    at = end;
  }
  if (at !== frame.length) throw corruptFrame(info, `${frame.length - at} bytes follow its last record`);
}

function corruptFrame(info: FrameInfo, why: string): Kvs2Error {
  return new Kvs2Error(
    'INCONSISTENT_STATE',
    `the embedded log's frame at offset ${info.baseOffset} is corrupt: ${why}`,
  );
}
