/**
 * Kafka offsets are 64-bit; kvs2 offsets are JavaScript numbers (exact up to 2^53, see log.ts). Every
 * conversion goes through here so that an offset we cannot represent fails loudly instead of rounding.
 */
export function offsetToNumber(offset: bigint, what: string): number {
  const value = Number(offset);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${what}: offset ${offset} is not a safe non-negative integer`);
  }
  return value;
}
