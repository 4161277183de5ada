/** Partition → offset. What it means (next to read, next to be written, ...) is said where it is used. */
export type Offsets = ReadonlyMap<number, number>;

/** True when, for every partition in `target`, `applied` has reached at least its offset. */
export function hasReached(applied: Offsets, target: Offsets): boolean {
  for (const [partition, offset] of target) {
    if ((applied.get(partition) ?? 0) < offset) return false;
  }
  return true;
}

/** How many offsets `applied` is behind `target`, per partition (only partitions that are behind). */
export function lagBehind(applied: Offsets, target: Offsets): Map<number, number> {
  const lag = new Map<number, number>();
  for (const [partition, offset] of target) {
    const behind = offset - (applied.get(partition) ?? 0);
    if (behind > 0) lag.set(partition, behind);
  }
  return lag;
}

/** A plain object for structured logs: `{ "0": 12, "3": 40 }`. */
export function offsetsForLog(offsets: Offsets): Record<string, number> {
  return Object.fromEntries([...offsets].map(([partition, offset]) => [String(partition), offset]));
}
