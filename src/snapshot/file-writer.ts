import type { FileHandle } from 'node:fs/promises';

/** Bytes gathered before one write: a socket hands on 64 KiB at a time, a disk wants more. */
const BATCH_BYTES = 4 * 1024 * 1024;
/** Batches written at once; the caller waits when this many are in flight. */
const MAX_WRITES_IN_FLIGHT = 2;

/**
 * Writes a file sequentially from pieces as they arrive, gathered into large batches, with a few batches
 * in flight at once (positioned writes, on libuv's threads): the receiver of a store image keeps reading the
 * network while the disk writes, instead of waiting for each 64 KiB piece to be written before the next is
 * read. The owner of the handle syncs and closes it; `flush()` first.
 */
export class FileWriter {
  readonly #handle: FileHandle;
  #batch: Buffer[] = [];
  #batchBytes = 0;
  /** Where the next batch goes. */
  #position = 0;
  readonly #inFlight: Promise<void>[] = [];

  constructor(handle: FileHandle) {
    this.#handle = handle;
  }

  /** Bytes handed to write() so far. */
  get bytes(): number {
    return this.#position + this.#batchBytes;
  }

  /** Takes `piece` (which must not change afterwards); waits only when enough is being written already. */
  async write(piece: Buffer): Promise<void> {
    this.#batch.push(piece);
    this.#batchBytes += piece.length;
    if (this.#batchBytes < BATCH_BYTES) return;
    this.#startBatch();
    if (this.#inFlight.length >= MAX_WRITES_IN_FLIGHT) await this.#inFlight.shift();
  }

  /** Writes what is gathered and waits until every write is done; the first failure throws. */
  async flush(): Promise<void> {
    if (this.#batchBytes > 0) this.#startBatch();
    const writes = this.#inFlight.splice(0);
    const results = await Promise.allSettled(writes);
    const failed = results.find((result) => result.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }

  #startBatch(): void {
    const batch = this.#batch;
    const position = this.#position;
    this.#position += this.#batchBytes;
    this.#batch = [];
    this.#batchBytes = 0;
    const write = writeBatch(this.#handle, batch, position);
    // A failure is thrown by the wait that meets it (write() or flush()); none goes unhandled meanwhile.
    write.catch(() => {});
    this.#inFlight.push(write);
  }
}

async function writeBatch(handle: FileHandle, batch: Buffer[], position: number): Promise<void> {
  const total = batch.reduce((sum, piece) => sum + piece.length, 0);
  let written = (await handle.writev(batch, position)).bytesWritten;
  if (written === total) return;
  // A short write (rare on a regular file): the rest, one write at a time.
  const rest = Buffer.concat(batch, total).subarray(written);
  while (written < total) {
    const { bytesWritten } = await handle.write(
      rest,
      written - (total - rest.length),
      total - written,
      position + written,
    );
    written += bytesWritten;
  }
}
