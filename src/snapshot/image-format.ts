import { Kvs2Error } from '../errors.js';
import type { Offsets } from '../offsets.js';
import { KVS2_VERSION } from '../version.js';
import { MetadataFields } from './metadata-fields.js';
import { logKindOf, type SnapshotMetadata } from './snapshot-format.js';

/**
 * The store image (docs/snapshot-format.md, "Store image"): a node's LMDB file as LMDB's compacting copy
 * wrote it, with a small header in front and a trailer behind, the same in a file and on the wire.
 *
 *   header     8 bytes magic "KVS2IMAG", the image format version (u32 BE), the metadata's length (u32 BE)
 *   metadata   UTF-8 JSON (ImageMetadata): the facts of the file, read from it
 *   file       exactly `bytes` bytes: data.mdb
 *   trailer    8 bytes "KVS2END.", the file's length again (u64 BE), CRC-32 of every byte before the
 *              trailer (u32 BE)
 *
 * Nothing may follow the trailer. Only a kvs2 whose LMDB reads the file can use it: it is for a new node
 * bootstrapping from a peer of the same release, never a backup (that is the portable format).
 */
export const IMAGE_MAGIC = Buffer.from('KVS2IMAG', 'latin1');
export const IMAGE_FORMAT_VERSION = 1;
export const IMAGE_HEADER_BYTES = IMAGE_MAGIC.length + 4 + 4;
export const IMAGE_TRAILER_MAGIC = Buffer.from('KVS2END.', 'latin1');
export const IMAGE_TRAILER_BYTES = IMAGE_TRAILER_MAGIC.length + 8 + 4;
/** A metadata longer than this is damage (it holds a few offsets). */
export const MAX_IMAGE_METADATA_BYTES = 1024 * 1024;

/** The metadata of a store image: the portable format's, plus the file's length. */
export interface ImageMetadata extends Omit<SnapshotMetadata, 'snapshotFormat'> {
  readonly imageFormat: number;
  /** Bytes of data.mdb that follow the metadata. */
  readonly bytes: number;
}

export function imageMetadataOf(facts: {
  readonly storeFormat: number;
  readonly logIdentity: string | null;
  readonly appliedOffsets: Offsets;
  readonly caughtUpAt: number | null;
  readonly keys: number;
  readonly createdAt: number;
  readonly bytes: number;
}): ImageMetadata {
  return {
    imageFormat: IMAGE_FORMAT_VERSION,
    kvs2Version: KVS2_VERSION,
    createdAt: facts.createdAt,
    storeFormat: facts.storeFormat,
    logKind: logKindOf(facts.logIdentity),
    logIdentity: facts.logIdentity,
    appliedOffsets: facts.appliedOffsets,
    caughtUpAt: facts.caughtUpAt,
    keys: facts.keys,
    bytes: facts.bytes,
  };
}

export function encodeImageHeader(metadata: ImageMetadata): Buffer {
  const json = Buffer.from(
    JSON.stringify({
      ...metadata,
      appliedOffsets: Object.fromEntries([...metadata.appliedOffsets].sort((a, b) => a[0] - b[0])),
    }),
    'utf8',
  );
  const header = Buffer.allocUnsafe(IMAGE_HEADER_BYTES + json.length);
  IMAGE_MAGIC.copy(header, 0);
  header.writeUInt32BE(IMAGE_FORMAT_VERSION, IMAGE_MAGIC.length);
  header.writeUInt32BE(json.length, IMAGE_MAGIC.length + 4);
  json.copy(header, IMAGE_HEADER_BYTES);
  return header;
}

export function encodeImageTrailer(bytes: number, crc: number): Buffer {
  const trailer = Buffer.allocUnsafe(IMAGE_TRAILER_BYTES);
  IMAGE_TRAILER_MAGIC.copy(trailer, 0);
  trailer.writeBigUInt64BE(BigInt(bytes), IMAGE_TRAILER_MAGIC.length);
  trailer.writeUInt32BE(crc, IMAGE_TRAILER_MAGIC.length + 8);
  return trailer;
}

/** The image format version and metadata length of a header's fixed part (IMAGE_HEADER_BYTES, magic checked). */
export function parseImageHeader(header: Buffer): { readonly version: number; readonly metadataBytes: number } {
  const version = header.readUInt32BE(IMAGE_MAGIC.length);
  if (version !== IMAGE_FORMAT_VERSION) {
    throw new Kvs2Error(
      'DATA_FORMAT_UNSUPPORTED',
      `the store image is in image format version ${version}, which this kvs2 (${KVS2_VERSION}) cannot read ` +
        `(it reads ${IMAGE_FORMAT_VERSION})`,
    );
  }
  const metadataBytes = header.readUInt32BE(IMAGE_MAGIC.length + 4);
  if (metadataBytes === 0 || metadataBytes > MAX_IMAGE_METADATA_BYTES) {
    throw invalidImage(`its metadata claims ${metadataBytes} bytes`);
  }
  return { version, metadataBytes };
}

/** Parses and checks an image's metadata JSON; SNAPSHOT_INVALID saying what is wrong. */
export function parseImageMetadata(body: Buffer): ImageMetadata {
  const fields = MetadataFields.parse(body, invalidImage);
  if (fields.count('imageFormat') !== IMAGE_FORMAT_VERSION) {
    throw fields.bad('imageFormat', String(IMAGE_FORMAT_VERSION));
  }
  const logIdentity = fields.logIdentity();
  return {
    imageFormat: IMAGE_FORMAT_VERSION,
    kvs2Version: fields.string('kvs2Version'),
    createdAt: fields.count('createdAt'),
    storeFormat: fields.count('storeFormat'),
    logKind: logKindOf(logIdentity),
    logIdentity,
    appliedOffsets: fields.appliedOffsets(),
    caughtUpAt: fields.nullableCount('caughtUpAt'),
    keys: fields.count('keys'),
    bytes: fields.count('bytes'),
  };
}

export function invalidImage(why: string): Kvs2Error {
  return new Kvs2Error('SNAPSHOT_INVALID', `not a whole kvs2 store image: ${why}`);
}
