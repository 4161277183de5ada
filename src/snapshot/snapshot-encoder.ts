import { createHash } from 'node:crypto';
import { Kvs2Error } from '../errors.js';
import type { StoreSnapshot } from '../store/store-snapshot.js';
import {
  encodeHeader,
  encodeMetadataFrame,
  encodeTrailerFrame,
  FRAME_ENTRIES,
  FRAME_HEADER_BYTES,
  MAX_FRAME_BYTES,
  metadataOf,
  type SnapshotMetadata,
  sealFrame,
  varintBytes,
  writeVarint,
} from './snapshot-format.js';

export interface SnapshotEncoderOptions {
  /**
   * Entries go out in frames of about this many bytes (default 64 KiB); an entry larger alone in its own.
   * Building a frame is synchronous (reads from the store's map): 64 KiB of 116-byte entries take ~1.4 ms
   * of the main thread here, 256 KiB ~6 ms, which a node serving reads meanwhile feels in its latency.
   */
  readonly frameBytes?: number;
  /** No chunk is larger (default 1 MiB): a larger frame (a large entry) goes out in pieces. */
  readonly maxChunkBytes?: number;
  /** Wall clock, for the metadata's createdAt (tests). */
  readonly now?: () => number;
  /**
   * A time the caller knows the snapshot's positions were caught up at: it asked the log's end then, and
   * the snapshot's offsets reach that end. Taken as the metadata's caughtUpAt when later than the store's
   * saved one, which a node writes only every progress interval and only when it finds no lag at all.
   */
  readonly caughtUpAt?: number;
}

const DEFAULT_FRAME_BYTES = 64 * 1024;
const DEFAULT_MAX_CHUNK_BYTES = 1024 * 1024;

/**
 * A store snapshot encoded in the snapshot format (snapshot-format.ts), as chunks of bytes pulled one at a
 * time: an entry is read from the store's transaction only when the consumer asks for the chunk that holds
 * it, so a slow consumer (a file, a gRPC stream with its flow control) sets the pace and memory holds one
 * frame at a time. The chunks concatenated are the snapshot; how they are cut carries no meaning.
 *
 * The encoder owns the snapshot: it closes it once the last chunk is taken, when iteration stops early or
 * fails, or on close() (which also covers an encoder never iterated).
 */
export class SnapshotEncoder implements AsyncIterable<Buffer>, Disposable {
  readonly metadata: SnapshotMetadata;
  readonly #snapshot: StoreSnapshot;
  readonly #frameBytes: number;
  readonly #maxChunkBytes: number;
  #iterated = false;

  constructor(snapshot: StoreSnapshot, options: SnapshotEncoderOptions = {}) {
    this.#snapshot = snapshot;
    this.#frameBytes = options.frameBytes ?? DEFAULT_FRAME_BYTES;
    this.#maxChunkBytes = options.maxChunkBytes ?? DEFAULT_MAX_CHUNK_BYTES;
    try {
      const saved = snapshot.progress.caughtUpAt;
      const known = options.caughtUpAt;
      this.metadata = metadataOf({
        storeFormat: snapshot.storeFormat,
        ...snapshot.progress,
        caughtUpAt: known === undefined || (saved !== null && saved >= known) ? saved : known,
        keys: snapshot.keys,
        createdAt: (options.now ?? Date.now)(),
      });
    } catch (error) {
      snapshot.close();
      throw error;
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    if (this.#iterated) throw new Kvs2Error('STORE_UNAVAILABLE', 'a snapshot encoder is iterated once');
    this.#iterated = true;
    return this.#chunks();
  }

  /** Ends the snapshot's read transaction. Safe at any time, and more than once. */
  close(): void {
    this.#snapshot.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  async *#chunks(): AsyncGenerator<Buffer, void, undefined> {
    try {
      const hash = createHash('sha256');
      const header = encodeHeader();
      hash.update(header);
      yield header;
      const metadata = encodeMetadataFrame(this.metadata);
      hash.update(metadata);
      yield metadata;
      let entries = 0;
      for (const frame of this.#entryFrames((count) => (entries += count))) {
        hash.update(frame);
        yield* this.#pieces(frame);
      }
      if (entries !== this.metadata.keys) {
        throw new Kvs2Error(
          'INCONSISTENT_STATE',
          `the store's snapshot held ${entries} entries, but its transaction counted ${this.metadata.keys}`,
        );
      }
      yield encodeTrailerFrame(entries, hash.digest());
    } finally {
      this.close();
    }
  }

  /** Entry frames, each built only when the previous one was taken. */
  *#entryFrames(counted: (entries: number) => void): Generator<Buffer> {
    let frame = this.#newFrame(this.#frameBytes);
    let at = FRAME_HEADER_BYTES + 1;
    let inFrame = 0;
    for (const { key, value, version } of this.#snapshot.entries()) {
      const need =
        varintBytes(key.length) + key.length + varintBytes(version) + varintBytes(value.length) + value.length;
      if (at + need > frame.length) {
        if (inFrame > 0) {
          counted(inFrame);
          yield sealFrame(frame.subarray(0, at));
          inFrame = 0;
        }
        frame = this.#newFrame(Math.max(this.#frameBytes, need));
        at = FRAME_HEADER_BYTES + 1;
      }
      at = writeVarint(frame, at, key.length);
      frame.set(key, at);
      at += key.length;
      at = writeVarint(frame, at, version);
      at = writeVarint(frame, at, value.length);
      frame.set(value, at);
      at += value.length;
      inFrame++;
    }
    if (inFrame > 0) {
      counted(inFrame);
      yield sealFrame(frame.subarray(0, at));
    }
  }

  #newFrame(bodyBytes: number): Buffer {
    if (1 + bodyBytes > MAX_FRAME_BYTES) {
      throw new Kvs2Error(
        'REPLY_TOO_LARGE',
        `an entry of ${bodyBytes} bytes does not fit in a snapshot frame (at most ${MAX_FRAME_BYTES} bytes)`,
      );
    }
    const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + 1 + bodyBytes);
    frame[FRAME_HEADER_BYTES] = FRAME_ENTRIES;
    return frame;
  }

  *#pieces(frame: Buffer): Generator<Buffer> {
    if (frame.length <= this.#maxChunkBytes) {
      yield frame;
      return;
    }
    for (let at = 0; at < frame.length; at += this.#maxChunkBytes) {
      yield frame.subarray(at, Math.min(frame.length, at + this.#maxChunkBytes));
    }
  }
}
