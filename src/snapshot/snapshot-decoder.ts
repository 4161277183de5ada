import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import type { StoreEntry } from '../store/store-snapshot.js';
import {
  FRAME_ENTRIES,
  FRAME_HEADER_BYTES,
  FRAME_METADATA,
  FRAME_TRAILER,
  HEADER_BYTES,
  invalidSnapshot,
  MAX_FRAME_BYTES,
  MAX_KEY_BYTES,
  MAX_VERSION_VARINT_BYTES,
  parseMetadata,
  READABLE_SNAPSHOT_FORMATS,
  SNAPSHOT_MAGIC,
  type SnapshotMetadata,
  TRAILER_BODY_BYTES,
  UNVERSIONED_SNAPSHOT_FORMAT,
  unsupportedSnapshot,
} from './snapshot-format.js';

/**
 * What a snapshot stream holds, in order: its metadata once, entries in key order, and its verified end.
 * Entries of a format-1 snapshot carry no versions: their `version` is 0, and the consumer decides what
 * they get (or refuses them) from the metadata's snapshotFormat.
 */
export type SnapshotPart =
  | { readonly kind: 'metadata'; readonly metadata: SnapshotMetadata }
  | { readonly kind: 'entries'; readonly entries: readonly StoreEntry[] }
  | { readonly kind: 'end'; readonly keys: number; readonly sha256: string };

/**
 * Reads a snapshot from chunks of bytes cut anywhere (a file, a gRPC stream), checking as it goes: the
 * magic and the format version first (DATA_FORMAT_UNSUPPORTED for a newer one), every frame's CRC-32, keys
 * strictly increasing, and at the end the entry count and the SHA-256 of the whole stream, and that nothing
 * follows. Anything else is SNAPSHOT_INVALID.
 *
 * Entries are handed out before the end is checked: a consumer must not make them visible before it got
 * the `end` part (a stream cut short, or damaged further on, throws instead of ending).
 */
export async function* decodeSnapshot(
  chunks: AsyncIterable<Uint8Array>,
): AsyncGenerator<SnapshotPart, void, undefined> {
  const bytes = new ByteQueue();
  const hash = createHash('sha256');
  const input = chunks[Symbol.asyncIterator]();
  let inputDone = false;
  /** Waits until `n` bytes are buffered; false if the input ends first. */
  const fill = async (n: number): Promise<boolean> => {
    while (bytes.length < n) {
      if (inputDone) return false;
      const next = await input.next();
      if (next.done === true) inputDone = true;
      else bytes.push(next.value);
    }
    return true;
  };
  try {
    if (!(await fill(HEADER_BYTES))) {
      if (bytes.length === 0) throw invalidSnapshot('it is empty');
      if (
        !bytes
          .peek(Math.min(bytes.length, SNAPSHOT_MAGIC.length))
          .equals(SNAPSHOT_MAGIC.subarray(0, Math.min(bytes.length, SNAPSHOT_MAGIC.length)))
      ) {
        throw invalidSnapshot('it does not begin with the kvs2 snapshot magic "KVS2SNAP"');
      }
      throw invalidSnapshot(`it ends after ${bytes.length} bytes, inside its header`);
    }
    const header = bytes.take(HEADER_BYTES);
    if (!header.subarray(0, SNAPSHOT_MAGIC.length).equals(SNAPSHOT_MAGIC)) {
      throw invalidSnapshot('it does not begin with the kvs2 snapshot magic "KVS2SNAP"');
    }
    const version = header.readUInt32BE(SNAPSHOT_MAGIC.length);
    if (!READABLE_SNAPSHOT_FORMATS.includes(version)) throw unsupportedSnapshot(version);
    hash.update(header);

    let metadata: SnapshotMetadata | undefined;
    let entries = 0;
    let lastKey: Buffer | undefined;
    let position = HEADER_BYTES;
    for (;;) {
      if (!(await fill(FRAME_HEADER_BYTES))) {
        throw invalidSnapshot(
          bytes.length === 0
            ? `it ends after ${position} bytes and ${entries} entries, without its trailer` +
                (metadata === undefined ? '' : ` (it announced ${metadata.keys} entries)`)
            : `it ends inside a frame header at byte ${position}`,
        );
      }
      const frameHeader = bytes.peek(FRAME_HEADER_BYTES);
      const length = frameHeader.readUInt32BE(0);
      const checksum = frameHeader.readUInt32BE(4);
      if (length === 0 || length > MAX_FRAME_BYTES) {
        throw invalidSnapshot(`the frame at byte ${position} claims ${length} bytes (at most ${MAX_FRAME_BYTES})`);
      }
      if (!(await fill(FRAME_HEADER_BYTES + length))) {
        throw invalidSnapshot(
          `it ends inside the frame at byte ${position}: ${bytes.length - FRAME_HEADER_BYTES} of its ${length} bytes are there`,
        );
      }
      const frame = bytes.take(FRAME_HEADER_BYTES + length);
      const body = frame.subarray(FRAME_HEADER_BYTES);
      if (crc32(body) !== checksum) throw invalidSnapshot(`the frame at byte ${position} fails its CRC-32 check`);
      const type = body[0];
      if (metadata === undefined) {
        if (type !== FRAME_METADATA) throw invalidSnapshot(`its first frame is of type ${type}, not metadata`);
        metadata = parseMetadata(body.subarray(1), version);
        hash.update(frame);
        position += frame.length;
        yield { kind: 'metadata', metadata };
        continue;
      }
      if (type === FRAME_METADATA) {
        throw invalidSnapshot(`a second metadata frame at byte ${position}`);
      } else if (type === FRAME_ENTRIES) {
        const decoded = decodeEntries(body, position, lastKey, version !== UNVERSIONED_SNAPSHOT_FORMAT);
        lastKey = decoded.lastKey;
        entries += decoded.entries.length;
        if (entries > metadata.keys) {
          throw invalidSnapshot(`it holds more entries than the ${metadata.keys} its metadata announced`);
        }
        hash.update(frame);
        yield { kind: 'entries', entries: decoded.entries };
      } else if (type === FRAME_TRAILER) {
        if (body.length !== TRAILER_BODY_BYTES) throw invalidSnapshot(`its trailer is ${body.length} bytes`);
        const counted = body.readBigUInt64BE(1);
        const digest = hash.digest();
        if (counted !== BigInt(entries) || entries !== metadata.keys) {
          throw invalidSnapshot(
            `its trailer counts ${counted} entries and its metadata ${metadata.keys}, but it holds ${entries}`,
          );
        }
        if (!digest.equals(body.subarray(9))) throw invalidSnapshot('its SHA-256 does not match its content');
        position += frame.length;
        if (bytes.length > 0 || (await fill(1))) {
          throw invalidSnapshot(`bytes follow its trailer at byte ${position}`);
        }
        yield { kind: 'end', keys: entries, sha256: digest.toString('hex') };
        return;
      } else {
        throw invalidSnapshot(`the frame at byte ${position} is of unknown type ${type}`);
      }
      position += frame.length;
    }
  } finally {
    if (!inputDone) await input.return?.();
  }
}

/** The entries of one frame; each key and value is a view of the frame's bytes. */
function decodeEntries(
  body: Buffer,
  position: number,
  previousKey: Buffer | undefined,
  versioned: boolean,
): { entries: StoreEntry[]; lastKey: Buffer | undefined } {
  const entries: StoreEntry[] = [];
  let lastKey = previousKey;
  const cursor = { at: 1 };
  const damaged = (why: string) => invalidSnapshot(`the entries frame at byte ${position} ${why}`);
  while (cursor.at < body.length) {
    const keyLength = readVarint(body, cursor, damaged);
    if (keyLength === 0 || keyLength > MAX_KEY_BYTES) throw damaged(`holds a key of ${keyLength} bytes`);
    if (cursor.at + keyLength > body.length) throw damaged('ends inside a key');
    const key = body.subarray(cursor.at, cursor.at + keyLength);
    cursor.at += keyLength;
    let version = 0;
    if (versioned) {
      version = readVarint(body, cursor, damaged, MAX_VERSION_VARINT_BYTES);
      if (version < 1 || !Number.isSafeInteger(version)) throw damaged(`holds a key of version ${version}`);
    }
    const valueLength = readVarint(body, cursor, damaged);
    if (cursor.at + valueLength > body.length) throw damaged('ends inside a value');
    const value = body.subarray(cursor.at, cursor.at + valueLength);
    cursor.at += valueLength;
    if (lastKey !== undefined && Buffer.compare(lastKey, key) >= 0) throw damaged('holds keys out of order');
    lastKey = key;
    entries.push({ key, value, version });
  }
  if (entries.length === 0) throw damaged('holds no entry');
  return { entries, lastKey };
}

function readVarint(bytes: Buffer, cursor: { at: number }, damaged: (why: string) => Error, maxBytes = 5): number {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < maxBytes; i++) {
    const byte = bytes[cursor.at++];
    if (byte === undefined) throw damaged('ends inside a length');
    value += (byte & 0x7f) * scale;
    if ((byte & 0x80) === 0) return value;
    scale *= 128;
  }
  throw damaged(`holds a varint of more than ${maxBytes} bytes`);
}

/** Chunks as they came, read from the front without copying where a read falls in one chunk. */
class ByteQueue {
  #chunks: Buffer[] = [];
  #length = 0;

  get length(): number {
    return this.#length;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.#length += chunk.length;
  }

  /** The first `n` bytes (n <= length), left in the queue. */
  peek(n: number): Buffer {
    const first = this.#chunks[0] as Buffer;
    if (first.length >= n) return first.subarray(0, n);
    return Buffer.concat(this.#chunks, this.#length).subarray(0, n);
  }

  /** Removes and returns the first `n` bytes (n <= length). */
  take(n: number): Buffer {
    const first = this.#chunks[0] as Buffer;
    if (first.length >= n) {
      const taken = first.subarray(0, n);
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
      this.#length -= n;
      return taken;
    }
    const taken = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const chunk = this.#chunks[0] as Buffer;
      const part = Math.min(chunk.length, n - at);
      chunk.copy(taken, at, 0, part);
      at += part;
      if (part === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(part);
    }
    this.#length -= n;
    return taken;
  }
}
