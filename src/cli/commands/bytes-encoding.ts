import { UsageError } from './usage-error.js';

/** How keys and values are written on the command line and printed: UTF-8 text (default), hex or base64. */
export type BytesEncoding = 'utf8' | 'hex' | 'base64';

const HEX = /^(?:[0-9a-fA-F]{2})*$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Bytes from their text form; Buffer.from alone would silently drop what does not decode. */
export function parseBytes(text: string, encoding: BytesEncoding, what: string): Buffer {
  if (encoding === 'utf8') return Buffer.from(text, 'utf8');
  const trimmed = text.trim();
  if (encoding === 'hex' && !HEX.test(trimmed)) throw new UsageError(`${what} is not hex: ${clip(text)}`);
  if (encoding === 'base64' && !BASE64.test(trimmed)) throw new UsageError(`${what} is not base64: ${clip(text)}`);
  return Buffer.from(trimmed, encoding);
}

/** Bytes as a string for JSON output (UTF-8 text that is not valid UTF-8 shows U+FFFD: use --base64). */
export function formatBytes(bytes: Buffer, encoding: BytesEncoding): string {
  return bytes.toString(encoding);
}

/**
 * Bytes for text output: raw for UTF-8, so that `kvs2 get k > file` writes the value as stored; the
 * encoded string otherwise.
 */
export function textBytes(bytes: Buffer, encoding: BytesEncoding): Buffer {
  return encoding === 'utf8' ? bytes : Buffer.from(bytes.toString(encoding));
}

/** Consistency tokens are printed and read as base64, everywhere, whatever the key encoding. */
export function formatToken(token: Buffer): string {
  return token.toString('base64');
}

export function parseToken(text: string, what = 'token'): Buffer {
  const trimmed = text.trim();
  if (trimmed.length === 0 || !BASE64.test(trimmed)) {
    throw new UsageError(`${what} is not a base64 consistency token: ${clip(text)}`);
  }
  return Buffer.from(trimmed, 'base64');
}

function clip(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}...` : text);
}
