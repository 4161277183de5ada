import type { LogRecord } from '../log/log.js';

/**
 * Log records packed for another thread: every key and value in one byte array, the rest in typed arrays.
 * A structured clone copies a Buffer's whole backing ArrayBuffer, and most small Buffers are views of
 * Node's shared 8 KiB pool: cloned one by one, each 100-byte key would cost a slab.
 */
export interface PackedRecords {
  readonly bytes: Uint8Array;
  readonly partitions: Int32Array;
  readonly offsets: Float64Array;
  /** -1: no key. */
  readonly keyLengths: Int32Array;
  /** -1: a tombstone. */
  readonly valueLengths: Int32Array;
}

export function packRecords(records: readonly LogRecord[]): PackedRecords {
  let size = 0;
  for (const record of records) size += (record.key?.length ?? 0) + (record.value?.length ?? 0);
  const bytes = new Uint8Array(size);
  const count = records.length;
  const packed: PackedRecords = {
    bytes,
    partitions: new Int32Array(count),
    offsets: new Float64Array(count),
    keyLengths: new Int32Array(count),
    valueLengths: new Int32Array(count),
  };
  let at = 0;
  for (let i = 0; i < count; i++) {
    const record = records[i] as LogRecord;
    packed.partitions[i] = record.partition;
    packed.offsets[i] = record.offset;
    packed.keyLengths[i] = record.key === null ? -1 : record.key.length;
    packed.valueLengths[i] = record.value === null ? -1 : record.value.length;
    if (record.key !== null) {
      bytes.set(record.key, at);
      at += record.key.length;
    }
    if (record.value !== null) {
      bytes.set(record.value, at);
      at += record.value.length;
    }
  }
  return packed;
}

/** The records again, their keys and values views of the one received byte array. */
export function unpackRecords(packed: PackedRecords): LogRecord[] {
  const all = Buffer.from(packed.bytes.buffer, packed.bytes.byteOffset, packed.bytes.byteLength);
  const records: LogRecord[] = [];
  let at = 0;
  for (let i = 0; i < packed.partitions.length; i++) {
    const keyLength = packed.keyLengths[i] as number;
    const valueLength = packed.valueLengths[i] as number;
    const key = keyLength < 0 ? null : all.subarray(at, at + keyLength);
    at += Math.max(keyLength, 0);
    const value = valueLength < 0 ? null : all.subarray(at, at + valueLength);
    at += Math.max(valueLength, 0);
    records.push({ partition: packed.partitions[i] as number, offset: packed.offsets[i] as number, key, value });
  }
  return records;
}

/** A copy in an ArrayBuffer of its own, the size of the bytes (what a structured clone should carry). */
export function ownBytes(bytes: Buffer): Uint8Array {
  return new Uint8Array(bytes);
}

/** A received Uint8Array as a Buffer, without copying. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
