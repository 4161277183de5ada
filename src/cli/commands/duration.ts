import { InvalidArgumentError } from 'commander';

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000 };

/** `--timeout`: `500ms`, `5s`, `1.5s`, `2m`, or a bare number of seconds (as `timeout(1)` reads it). */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  const ms = match ? Math.round(Number(match[1]) * (UNIT_MS[match[2] ?? 's'] ?? 1000)) : Number.NaN;
  if (!(ms >= 1 && ms <= 2 ** 31 - 1)) {
    throw new InvalidArgumentError('give a duration such as 500ms, 5s or 2m (at least 1ms, under 24 days).');
  }
  return ms;
}
