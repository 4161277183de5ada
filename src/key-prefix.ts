/**
 * The first key after every key that starts with `prefix`; undefined when there is none ("" or all 0xff).
 * Scans by prefix and permissions on prefixes both turn a prefix into the range [prefix, prefixEnd).
 */
export function prefixEnd(prefix: Buffer): Buffer | undefined {
  for (let i = prefix.length - 1; i >= 0; i--) {
    const byte = prefix[i] as number;
    if (byte < 0xff) {
      const end = Buffer.from(prefix.subarray(0, i + 1));
      end[i] = byte + 1;
      return end;
    }
  }
  return undefined;
}
