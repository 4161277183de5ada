/** Nearest-rank percentile of an ascending array; null when empty. */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] ?? null;
}

export function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Median, min and max of the non-null values; null when there are none. */
export function spread(values: ReadonlyArray<number | null>): { median: number; min: number; max: number } | null {
  const present = values.filter((v): v is number => v !== null && Number.isFinite(v));
  const m = median(present);
  if (m === null) return null;
  return { median: m, min: Math.min(...present), max: Math.max(...present) };
}
