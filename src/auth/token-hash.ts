import { randomBytes, type ScryptOptions, scrypt, timingSafeEqual } from 'node:crypto';

/**
 * Bearer tokens at rest: `scrypt$N$r$p$salt$hash` (salt and hash in base64), Node's crypto.scrypt, so the
 * file says how each hash was made and stronger parameters can come later without breaking old lines.
 */
const DEFAULT = { N: 16384, r: 8, p: 1 } as const;
const SALT_BYTES = 16;
const KEY_BYTES = 32;

export interface TokenHash {
  readonly N: number;
  readonly r: number;
  readonly p: number;
  readonly salt: Buffer;
  readonly hash: Buffer;
}

function derive(
  token: string,
  salt: Buffer,
  params: ScryptOptions & { N: number; r: number; p: number },
  bytes: number,
) {
  // scrypt needs 128·N·r bytes; let it have them (within the parse's bounds) rather than fail on big N.
  const maxmem = 256 * params.N * params.r + 1024 * 1024;
  return new Promise<Buffer>((resolve, reject) =>
    scrypt(token, salt, bytes, { ...params, maxmem }, (error, key) => (error ? reject(error) : resolve(key))),
  );
}

/** The encoded hash of a token, with a fresh random salt. */
export async function hashToken(token: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(token, salt, DEFAULT, KEY_BYTES);
  return `scrypt$${DEFAULT.N}$${DEFAULT.r}$${DEFAULT.p}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

/** Parses an encoded hash, or says what is wrong with it (never echoing it: it is a secret's hash). */
export function parseTokenHash(encoded: string): TokenHash | string {
  const parts = encoded.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return "expected 'scrypt$N$r$p$salt$hash' (kvs2 auth hash-token)";
  const [N, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  // N a power of two; bounds keep one verification under ~1 GiB of memory.
  if (!Number.isInteger(N) || N < 2 || N > 2 ** 20 || (N & (N - 1)) !== 0) return 'N must be a power of two up to 2^20';
  if (!Number.isInteger(r) || r < 1 || r > 32) return 'r must be from 1 to 32';
  if (!Number.isInteger(p) || p < 1 || p > 16) return 'p must be from 1 to 16';
  if (N * r > 2 ** 23) return 'N·r too large';
  const salt = Buffer.from(parts[4] as string, 'base64');
  const hash = Buffer.from(parts[5] as string, 'base64');
  if (salt.length < 8) return 'salt too short (at least 8 bytes)';
  if (hash.length < 16) return 'hash too short (at least 16 bytes)';
  return { N, r, p, salt, hash };
}

/** Whether `token` is the one `expected` was made from (constant-time comparison). */
export async function tokenMatches(token: string, expected: TokenHash): Promise<boolean> {
  const { N, r, p } = expected;
  const actual = await derive(token, expected.salt, { N, r, p }, expected.hash.length);
  return timingSafeEqual(actual, expected.hash);
}
