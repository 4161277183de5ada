/**
 * How store format 2 lays out a value in the `kv` database: an 8-byte big-endian version, then the value's
 * bytes. One lookup gives both, and a write touches one page (a second database of versions would double
 * the page writes per applied key).
 *
 * A key's version is the log position of its last write: that record's offset + 1 in the key's partition
 * (so 0 never names a present key). Offsets are below 2^53, so the version is a JavaScript number.
 */
export const VERSION_BYTES = 8;

const TWO_TO_32 = 0x1_0000_0000;

/** Writes `version` as 8 bytes big-endian at `at`. */
export function writeVersion(target: Buffer, at: number, version: number): void {
  target.writeUInt32BE(Math.floor(version / TWO_TO_32), at);
  target.writeUInt32BE(version % TWO_TO_32, at + 4);
}

/** The version at the start of a stored value. */
export function readVersion(stored: Buffer): number {
  return stored.readUInt32BE(0) * TWO_TO_32 + stored.readUInt32BE(4);
}

/** Bytes a value of this length takes in the store. */
export function storedLength(valueLength: number): number {
  return VERSION_BYTES + valueLength;
}

/**
 * A reusable buffer for writes that LMDB copies at once (putSync in a synchronous transaction): one
 * allocation for many entries instead of one per entry.
 */
export class StoredValueScratch {
  #buffer = Buffer.allocUnsafeSlow(4096);

  /** `version` and `value` laid out as stored, in the scratch buffer (valid until the next call). */
  encode(version: number, value: Uint8Array): Buffer {
    const length = storedLength(value.length);
    if (this.#buffer.length < length) this.#buffer = Buffer.allocUnsafeSlow(Math.max(length, this.#buffer.length * 2));
    writeVersion(this.#buffer, 0, version);
    this.#buffer.set(value, VERSION_BYTES);
    return this.#buffer.subarray(0, length);
  }
}
