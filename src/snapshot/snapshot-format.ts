import { crc32 } from 'node:zlib';
import { Kvs2Error } from '../errors.js';
import type { Offsets } from '../offsets.js';
import { KVS2_VERSION } from '../version.js';
import { MetadataFields } from './metadata-fields.js';

/**
 * The snapshot format (docs/snapshot-format.md): one byte stream, the same in a file and on the wire.
 *
 *   header    8 bytes magic "KVS2SNAP", then the format version, unsigned 32-bit big-endian
 *   frames    each: body length (u32 BE), CRC-32 of the body (u32 BE), body; the body's first byte is its type
 *     1 metadata   once, first: UTF-8 JSON (SnapshotMetadata)
 *     2 entries    any number, in key order: per entry varint key length, key, varint version (format 2
 *                  only), varint value length, value
 *     3 trailer    once, last: entry count (u64 BE), SHA-256 of every byte before the trailer frame
 *
 * Nothing may follow the trailer. A reader installs nothing until it has checked the trailer, so a stream
 * cut anywhere is refused, never taken for a smaller store.
 */
export const SNAPSHOT_MAGIC = Buffer.from('KVS2SNAP', 'latin1');
export const HEADER_BYTES = SNAPSHOT_MAGIC.length + 4;
/** The format this kvs2 writes: 2, whose entries carry each key's version. */
export const SNAPSHOT_FORMAT_VERSION = 2;
/** The format without versions (written by a kvs2 before them). */
export const UNVERSIONED_SNAPSHOT_FORMAT = 1;
/** The formats this kvs2 reads. */
export const READABLE_SNAPSHOT_FORMATS: readonly number[] = [1, 2];
/** Versions are below 2^53: a varint of 8 bytes holds 56 bits. */
export const MAX_VERSION_VARINT_BYTES = 8;

export const FRAME_HEADER_BYTES = 8;
export const FRAME_METADATA = 1;
export const FRAME_ENTRIES = 2;
export const FRAME_TRAILER = 3;
/** Type, entry count, SHA-256. */
export const TRAILER_BODY_BYTES = 1 + 8 + 32;
/**
 * No frame is larger: a reader refuses a length past it before buffering anything, so a damaged length
 * cannot make it hold a whole file in memory. An entry must fit in one frame.
 */
export const MAX_FRAME_BYTES = 512 * 1024 * 1024;
/** LMDB's largest key (lmdb-js's default page size); a longer one cannot be stored, so it is damage. */
export const MAX_KEY_BYTES = 1978;

/** What a snapshot says about itself, before its entries. */
export interface SnapshotMetadata {
  /** The snapshot format version (also in the header). */
  readonly snapshotFormat: number;
  /** The kvs2 that wrote it. */
  readonly kvs2Version: string;
  /** Wall-clock milliseconds when the snapshot's read transaction began. */
  readonly createdAt: number;
  /** The format version of the store it was read from (store-format.ts). */
  readonly storeFormat: number;
  /** From the log identity's prefix; null for a store that never applied anything. */
  readonly logKind: 'embedded' | 'kafka' | null;
  /** The log identity as the store recorded it ("embedded:<uuid>", "kafka:<topic id>"), or null. */
  readonly logIdentity: string | null;
  /** Per partition, the next offset to apply: the entries are the log's content below these. */
  readonly appliedOffsets: Offsets;
  /** Wall-clock milliseconds when the node last knew itself caught up with the log; null if never. */
  readonly caughtUpAt: number | null;
  /** How many entries follow. */
  readonly keys: number;
}

/** The metadata of a snapshot of a store with this progress, taken now. */
export function metadataOf(facts: {
  readonly storeFormat: number;
  readonly logIdentity: string | null;
  readonly appliedOffsets: Offsets;
  readonly caughtUpAt: number | null;
  readonly keys: number;
  readonly createdAt: number;
}): SnapshotMetadata {
  return {
    snapshotFormat: SNAPSHOT_FORMAT_VERSION,
    kvs2Version: KVS2_VERSION,
    createdAt: facts.createdAt,
    storeFormat: facts.storeFormat,
    logKind: logKindOf(facts.logIdentity),
    logIdentity: facts.logIdentity,
    appliedOffsets: facts.appliedOffsets,
    caughtUpAt: facts.caughtUpAt,
    keys: facts.keys,
  };
}

export function logKindOf(identity: string | null): SnapshotMetadata['logKind'] {
  if (identity === null) return null;
  if (identity.startsWith('embedded:')) return 'embedded';
  if (identity.startsWith('kafka:')) return 'kafka';
  throw new Kvs2Error(
    'INCONSISTENT_STATE',
    `the store records log identity ${JSON.stringify(identity)} of no known kind`,
  );
}

export function encodeHeader(version = SNAPSHOT_FORMAT_VERSION): Buffer {
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  SNAPSHOT_MAGIC.copy(header, 0);
  header.writeUInt32BE(version, SNAPSHOT_MAGIC.length);
  return header;
}

/** A frame around `body` (whose first byte is the frame type), which must leave FRAME_HEADER_BYTES free in front. */
export function sealFrame(frame: Buffer): Buffer {
  const body = frame.subarray(FRAME_HEADER_BYTES);
  frame.writeUInt32BE(body.length, 0);
  frame.writeUInt32BE(crc32(body), 4);
  return frame;
}

export function encodeMetadataFrame(metadata: SnapshotMetadata): Buffer {
  const json = JSON.stringify({
    ...metadata,
    appliedOffsets: Object.fromEntries([...metadata.appliedOffsets].sort((a, b) => a[0] - b[0])),
  });
  const text = Buffer.from(json, 'utf8');
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + 1 + text.length);
  frame[FRAME_HEADER_BYTES] = FRAME_METADATA;
  text.copy(frame, FRAME_HEADER_BYTES + 1);
  return sealFrame(frame);
}

export function encodeTrailerFrame(entries: number, sha256: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + TRAILER_BODY_BYTES);
  frame[FRAME_HEADER_BYTES] = FRAME_TRAILER;
  frame.writeBigUInt64BE(BigInt(entries), FRAME_HEADER_BYTES + 1);
  sha256.copy(frame, FRAME_HEADER_BYTES + 9);
  return sealFrame(frame);
}

/** Parses and checks a metadata frame's JSON; SNAPSHOT_INVALID saying what is wrong. */
export function parseMetadata(body: Buffer, headerVersion: number): SnapshotMetadata {
  const fields = MetadataFields.parse(body, invalidSnapshot);
  const snapshotFormat = fields.count('snapshotFormat');
  if (snapshotFormat !== headerVersion) {
    throw invalidSnapshot(`its metadata says format ${snapshotFormat} but its header says ${headerVersion}`);
  }
  const kvs2Version = fields.string('kvs2Version');
  const logIdentity = fields.logIdentity();
  if (fields.field('logKind') !== logKindOf(logIdentity)) {
    throw fields.bad('logKind', `${JSON.stringify(logKindOf(logIdentity))} (from logIdentity)`);
  }
  return {
    snapshotFormat,
    kvs2Version,
    createdAt: fields.count('createdAt'),
    storeFormat: fields.count('storeFormat'),
    logKind: logKindOf(logIdentity),
    logIdentity,
    appliedOffsets: fields.appliedOffsets(),
    caughtUpAt: fields.nullableCount('caughtUpAt'),
    keys: fields.count('keys'),
  };
}

export function invalidSnapshot(why: string): Kvs2Error {
  return new Kvs2Error('SNAPSHOT_INVALID', `not a whole kvs2 snapshot: ${why}`);
}

export function unsupportedSnapshot(version: number): Kvs2Error {
  return new Kvs2Error(
    'DATA_FORMAT_UNSUPPORTED',
    `the snapshot is in format version ${version}, which this kvs2 (${KVS2_VERSION}) cannot read: it reads ` +
      `snapshot format version ${READABLE_SNAPSHOT_FORMATS.join(', ')}. It was written by a newer kvs2: ` +
      'restore it with that version (or a later one).',
  );
}

/** Bytes an unsigned LEB128 varint of `value` takes. */
export function varintBytes(value: number): number {
  let bytes = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    bytes++;
  }
  return bytes;
}

export function writeVarint(buffer: Buffer, at: number, value: number): number {
  while (value >= 0x80) {
    buffer[at++] = (value & 0x7f) | 0x80;
    value = Math.floor(value / 128);
  }
  buffer[at++] = value;
  return at;
}
