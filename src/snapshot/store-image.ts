import { readdirSync } from 'node:fs';
import { mkdtemp, open as openFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { Kvs2Error } from '../errors.js';
import { hasReached, type Offsets } from '../offsets.js';
import { markStoreFileCaughtUp, readStoreFile, type StoreFileFacts } from '../store/store-file.js';
import type { StoreFileSource } from '../store/store-snapshot.js';
import { encodeImageHeader, encodeImageTrailer, type ImageMetadata, imageMetadataOf } from './image-format.js';

/** Names of the folders a node copies its store into for a store image, inside the store's own folder. */
const IMAGE_PREFIX = '.store-image-';
const DEFAULT_MAX_CHUNK_BYTES = 1024 * 1024;

export interface StoreImageOptions {
  /** No chunk is larger (default 1 MiB). */
  readonly maxChunkBytes?: number;
  /**
   * What the caller knows of the log when it asked: the log's end then (`end`, of log `identity`) and the
   * time it asked (`at`). A copy whose offsets reach that end was caught up at `at`, which the copy then
   * records as its caughtUpAt (the store saves one only every progress interval), so that a node
   * bootstrapping from it judges its age right.
   */
  readonly caughtUp?: { readonly at: number; readonly end: Offsets; readonly identity: string | null };
  /** Wall clock, for the metadata's createdAt (tests). */
  readonly now?: () => number;
}

/**
 * A store image (image-format.ts) of a node's store: LMDB's compacted copy of the store's file, made in a
 * folder inside the store's own (the node's data dir, and the same file system: no copy of the disk's
 * worth lands elsewhere, and LMDB ignores folders beside its files), then
 * read back sequentially in large chunks behind a header and before a trailer. Neither the copy (on a
 * thread of LMDB's) nor the reads (fs promises) block the event loop; the copy is consistent by itself
 * (one read transaction), so nothing of the store stays pinned while the image streams.
 *
 * The image owns the copy: it removes it once the last chunk is taken, when iteration stops early or fails,
 * or on close() (which also covers an image never iterated). A copy a crash left behind is removed when
 * the node next starts (removeLeftoverImages()).
 */
export class StoreImage implements AsyncIterable<Buffer>, AsyncDisposable {
  readonly metadata: ImageMetadata;
  readonly #dir: string;
  readonly #maxChunkBytes: number;
  #iterated = false;
  #removed: Promise<void> | undefined;

  private constructor(dir: string, metadata: ImageMetadata, maxChunkBytes: number) {
    this.#dir = dir;
    this.metadata = metadata;
    this.#maxChunkBytes = maxChunkBytes;
  }

  /** Copies the store and reads the copy's facts; the caller iterates the image, or closes it. */
  static async take(store: StoreFileSource, options: StoreImageOptions = {}): Promise<StoreImage> {
    const dir = await mkdtemp(join(store.dir, IMAGE_PREFIX));
    try {
      await store.copyCompacted(dir);
      let facts: StoreFileFacts = await readStoreFile(dir);
      const known = options.caughtUp;
      if (
        known !== undefined &&
        facts.progress.logIdentity === known.identity &&
        hasReached(facts.progress.appliedOffsets, known.end)
      ) {
        facts = await markStoreFileCaughtUp(dir, known.at);
      }
      if (facts.loading) {
        // A store being filled from a peer holds part of a snapshot: nothing to hand on.
        throw new Kvs2Error(
          'STORE_UNAVAILABLE',
          'the store is being loaded from a snapshot; try again once it is whole',
        );
      }
      const file = join(dir, 'data.mdb');
      const metadata = imageMetadataOf({
        storeFormat: facts.storeFormat,
        ...facts.progress,
        keys: facts.keys,
        createdAt: (options.now ?? Date.now)(),
        bytes: (await stat(file)).size,
      });
      return new StoreImage(dir, metadata, options.maxChunkBytes ?? DEFAULT_MAX_CHUNK_BYTES);
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    if (this.#iterated) throw new Kvs2Error('STORE_UNAVAILABLE', 'a store image is iterated once');
    this.#iterated = true;
    return this.#chunks();
  }

  /** Removes the copy. Safe at any time, and more than once. */
  close(): Promise<void> {
    this.#removed ??= rm(this.#dir, { recursive: true, force: true });
    return this.#removed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async *#chunks(): AsyncGenerator<Buffer, void, undefined> {
    try {
      const header = encodeImageHeader(this.metadata);
      let crc = crc32(header);
      yield header;
      const bytes = this.metadata.bytes;
      const handle = await openFile(join(this.#dir, 'data.mdb'), 'r');
      try {
        let at = 0;
        while (at < bytes) {
          // A buffer per chunk: gRPC holds each one until it is sent.
          const chunk = Buffer.allocUnsafe(Math.min(this.#maxChunkBytes, bytes - at));
          const { bytesRead } = await handle.read(chunk, 0, chunk.length, at);
          if (bytesRead !== chunk.length) {
            throw new Kvs2Error('INCONSISTENT_STATE', `the store's copy ended at byte ${at + bytesRead} of ${bytes}`);
          }
          crc = crc32(chunk, crc);
          at += bytesRead;
          yield chunk;
        }
      } finally {
        await handle.close();
      }
      yield encodeImageTrailer(bytes, crc);
    } finally {
      await this.close();
    }
  }
}

/** Removes the copies that store images a crash interrupted left in the store's folder `storeDir`. */
export async function removeLeftoverImages(storeDir: string): Promise<void> {
  let names: string[];
  try {
    names = readdirSync(storeDir);
  } catch {
    return;
  }
  for (const name of names) {
    if (name.startsWith(IMAGE_PREFIX)) await rm(join(storeDir, name), { recursive: true, force: true });
  }
}
