import { mkdir, open as openFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { abortError } from '../errors.js';
import { readStoreFile } from '../store/store-file.js';
import { STORE_FORMAT_VERSION } from '../store/store-format.js';
import { makeStagingDir, refuseIfNodeRunning, replaceStoreData, syncDir } from './data-dir.js';
import { FileWriter } from './file-writer.js';
import {
  IMAGE_HEADER_BYTES,
  IMAGE_MAGIC,
  IMAGE_TRAILER_BYTES,
  IMAGE_TRAILER_MAGIC,
  type ImageMetadata,
  invalidImage,
  parseImageHeader,
  parseImageMetadata,
} from './image-format.js';

/** A snapshot stream whose first bytes were read to tell its format; `chunks` still yields them first. */
export interface SniffedSnapshot {
  readonly format: 'store-image' | 'portable';
  readonly chunks: AsyncIterable<Uint8Array>;
}

/**
 * Reads the first bytes of a snapshot stream to tell a store image (magic "KVS2IMAG") from the portable
 * format (anything else, whose decoder says what is wrong with it if it is not "KVS2SNAP" either): a peer
 * that predates store images sends the portable format whatever it was asked for.
 */
export async function sniffSnapshot(source: AsyncIterable<Uint8Array>): Promise<SniffedSnapshot> {
  const input = source[Symbol.asyncIterator]();
  const head: Uint8Array[] = [];
  let length = 0;
  let done = false;
  try {
    while (length < IMAGE_MAGIC.length) {
      const next = await input.next();
      if (next.done === true) {
        done = true;
        break;
      }
      head.push(next.value);
      length += next.value.length;
    }
  } catch (error) {
    await input.return?.();
    throw error;
  }
  const first = Buffer.concat(head, length);
  const format = first.subarray(0, IMAGE_MAGIC.length).equals(IMAGE_MAGIC) ? 'store-image' : 'portable';
  return { format, chunks: new PrefixedChunks(first, input, done) };
}

/**
 * The bytes read ahead, then the rest of the input. Not a generator: ending it (return()) ends the input
 * even when it was never iterated, so a sniffed stream nobody reads does not stay open on the peer.
 */
class PrefixedChunks implements AsyncIterable<Uint8Array>, AsyncIterator<Uint8Array> {
  #first: Buffer | null;
  readonly #input: AsyncIterator<Uint8Array>;
  #done: boolean;

  constructor(first: Buffer, input: AsyncIterator<Uint8Array>, done: boolean) {
    this.#first = first.length > 0 ? first : null;
    this.#input = input;
    this.#done = done;
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return this;
  }

  async next(): Promise<IteratorResult<Uint8Array>> {
    const first = this.#first;
    if (first !== null) {
      this.#first = null;
      return { done: false, value: first };
    }
    if (this.#done) return { done: true, value: undefined };
    const next = await this.#input.next();
    if (next.done === true) this.#done = true;
    return next;
  }

  async return(): Promise<IteratorResult<Uint8Array>> {
    this.#first = null;
    if (!this.#done) {
      this.#done = true;
      await this.#input.return?.();
    }
    return { done: true, value: undefined };
  }
}

export interface InstallImageOptions {
  /** The node's data dir: the image becomes `<dataDir>/store/data.mdb`. Nothing may have that store open. */
  readonly dataDir: string;
  /**
   * Judges the metadata, which arrives before the file: throws (or rejects) to refuse the image. A promise
   * lets the file stream into the staging folder while the judgment is pending (a node bootstrapping from a
   * peer fetches the image while its log opens); nothing is installed before it resolves, and a refusal
   * stops the transfer at the next piece.
   */
  readonly accept: (metadata: ImageMetadata) => void | Promise<void>;
  /** Stops the install; the data dir is left as it was. */
  readonly signal?: AbortSignal;
}

export interface InstalledImage {
  readonly metadata: ImageMetadata;
  /** Bytes of the installed data.mdb. */
  readonly bytes: number;
}

/**
 * Verifies and installs a store image (image-format.ts) as a data dir's store, for a node bootstrapping
 * from a peer before it opens its store. The file streams into a staging folder of the data dir, with its
 * CRC-32 computed on the way; once the trailer checked out (length and CRC), the file is synced and opened
 * read-only, and installed only if what it says about itself is what its header said (the header was
 * already judged by `accept`): its store format is this kvs2's, it holds no unfinished load, the same log,
 * offsets, catch-up time and key count. Then one rename makes it the store (data-dir.ts).
 *
 * Any failure (a damaged or truncated stream, a refusal, an abort, a full disk) removes the staging folder
 * and leaves the data dir as it was.
 */
export async function installStoreImage(
  chunks: AsyncIterable<Uint8Array>,
  options: InstallImageOptions,
): Promise<InstalledImage> {
  const { dataDir, signal } = options;
  await refuseIfNodeRunning(dataDir, `install a store image into ${dataDir}`);
  const staging = await makeStagingDir(dataDir);
  try {
    const stagedStore = join(staging, 'store');
    await mkdir(stagedStore);
    const file = join(stagedStore, 'data.mdb');
    const metadata = await receiveImage(chunks, file, options);
    const facts = await readStoreFile(stagedStore);
    const differs = (what: string, inFile: unknown, inHeader: unknown): void => {
      if (JSON.stringify(inFile) !== JSON.stringify(inHeader)) {
        throw invalidImage(`its file says ${what} ${JSON.stringify(inFile)}, its header ${JSON.stringify(inHeader)}`);
      }
    };
    if (facts.storeFormat !== STORE_FORMAT_VERSION) {
      throw invalidImage(`its file is in store format ${facts.storeFormat}, not ${STORE_FORMAT_VERSION}`);
    }
    if (facts.loading) throw invalidImage('its file holds a snapshot load that never finished');
    differs('store format', facts.storeFormat, metadata.storeFormat);
    differs('log', facts.progress.logIdentity, metadata.logIdentity);
    const sorted = (offsets: ReadonlyMap<number, number>) => [...offsets].sort((a, b) => a[0] - b[0]);
    differs('applied offsets', sorted(facts.progress.appliedOffsets), sorted(metadata.appliedOffsets));
    differs('caught up at', facts.progress.caughtUpAt, metadata.caughtUpAt);
    differs('keys', facts.keys, metadata.keys);
    if (signal?.aborted) throw abortError(signal, 'installing a store image');
    // Again: another process may have opened the data dir's store while the image streamed in.
    await refuseIfNodeRunning(dataDir, `install a store image into ${dataDir}`);
    await syncDir(stagedStore);
    await replaceStoreData(dataDir, stagedStore);
    return { metadata, bytes: metadata.bytes };
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/** Writes the image's file to `file`, checking its header, length and CRC-32; synced when it returns. */
async function receiveImage(
  chunks: AsyncIterable<Uint8Array>,
  file: string,
  options: InstallImageOptions,
): Promise<ImageMetadata> {
  const { signal } = options;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const take = (n: number): Buffer => {
    const all = Buffer.concat(pending, pendingBytes);
    pending = all.length > n ? [all.subarray(n)] : [];
    pendingBytes = all.length - n;
    return all.subarray(0, n);
  };
  let crc = 0;
  let metadata: ImageMetadata | undefined;
  let judged: Promise<void> = Promise.resolve();
  let refusal: { readonly error: unknown } | undefined;
  let metadataBytes = -1;
  const handle = await openFile(file, 'wx');
  const writer = new FileWriter(handle);
  try {
    for await (const piece of chunks) {
      if (signal?.aborted) throw abortError(signal, 'installing a store image');
      if (refusal !== undefined) throw refusal.error;
      let chunk = Buffer.isBuffer(piece) ? piece : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
      if (metadata === undefined) {
        pending.push(chunk);
        pendingBytes += chunk.length;
        if (metadataBytes < 0) {
          if (pendingBytes < IMAGE_HEADER_BYTES) continue;
          const header = take(IMAGE_HEADER_BYTES);
          if (!header.subarray(0, IMAGE_MAGIC.length).equals(IMAGE_MAGIC)) {
            throw invalidImage('it does not begin with the magic "KVS2IMAG"');
          }
          metadataBytes = parseImageHeader(header).metadataBytes;
          crc = crc32(header, crc);
        }
        if (pendingBytes < metadataBytes) continue;
        const json = take(metadataBytes);
        crc = crc32(json, crc);
        metadata = parseImageMetadata(json);
        const verdict = options.accept(metadata);
        if (verdict instanceof Promise) {
          judged = verdict;
          verdict.catch((error: unknown) => {
            refusal = { error };
          });
        }
        if (pendingBytes === 0) continue;
        chunk = take(pendingBytes);
      }
      const fileLeft = metadata.bytes - writer.bytes;
      if (fileLeft > 0) {
        const part = chunk.length <= fileLeft ? chunk : chunk.subarray(0, fileLeft);
        crc = crc32(part, crc);
        await writer.write(part);
        if (part.length === chunk.length) continue;
        chunk = chunk.subarray(part.length);
      }
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (pendingBytes > IMAGE_TRAILER_BYTES) {
        throw invalidImage(`bytes follow its trailer (${pendingBytes - IMAGE_TRAILER_BYTES} of them)`);
      }
    }
    if (metadata === undefined) {
      throw invalidImage(
        metadataBytes < 0 ? `it ends after ${pendingBytes} bytes, inside its header` : 'it ends inside its metadata',
      );
    }
    if (writer.bytes < metadata.bytes) {
      throw invalidImage(`it ends after ${writer.bytes} of the file's ${metadata.bytes} bytes, without its trailer`);
    }
    if (pendingBytes < IMAGE_TRAILER_BYTES) throw invalidImage(`it ends inside its trailer`);
    const trailer = take(IMAGE_TRAILER_BYTES);
    if (!trailer.subarray(0, IMAGE_TRAILER_MAGIC.length).equals(IMAGE_TRAILER_MAGIC)) {
      throw invalidImage('its trailer does not begin with "KVS2END."');
    }
    const length = trailer.readBigUInt64BE(IMAGE_TRAILER_MAGIC.length);
    if (length !== BigInt(metadata.bytes)) {
      throw invalidImage(`its trailer says ${length} bytes, its header ${metadata.bytes}`);
    }
    if (trailer.readUInt32BE(IMAGE_TRAILER_MAGIC.length + 8) !== crc) {
      throw invalidImage('its CRC-32 does not match its content');
    }
    await judged;
    await writer.flush();
    await handle.sync();
    return metadata;
  } finally {
    // Writes still in flight after a failure end before the file is closed (and its folder removed).
    await writer.flush().catch(() => {});
    await handle.close();
  }
}
