import { Kvs2Error } from '../errors.js';

export interface ScanRequestInput {
  readonly prefix: Buffer;
  readonly start: Buffer;
  readonly end: Buffer;
  readonly limit: number;
  readonly keysOnly: boolean;
  /** The last key of the previous page; empty for the first page. */
  readonly continuation: Buffer;
}

/** The key range of one scan page: [start, end), end undefined for no upper bound. */
export function scanRange(request: ScanRequestInput, maxKeyBytes: number): { start: Buffer; end: Buffer | undefined } {
  const { prefix, continuation } = request;
  let start: Buffer;
  let end: Buffer | undefined;
  if (prefix.length > 0) {
    if (request.start.length > 0 || request.end.length > 0) {
      throw new Kvs2Error('INVALID_ARGUMENT', 'give either prefix or start/end, not both');
    }
    if (prefix.length > maxKeyBytes) {
      throw new Kvs2Error('INVALID_ARGUMENT', `prefix is ${prefix.length} bytes; at most ${maxKeyBytes} are allowed`);
    }
    start = prefix;
    end = prefixEnd(prefix);
  } else {
    start = request.start;
    end = request.end.length === 0 ? undefined : request.end;
    if (end !== undefined && Buffer.compare(start, end) > 0) {
      throw new Kvs2Error('INVALID_ARGUMENT', 'start is after end');
    }
  }
  if (continuation.length > 0) {
    // The next page starts right after the last key returned: the smallest key greater than it.
    const after = Buffer.concat([continuation, Buffer.of(0)]);
    if (Buffer.compare(after, start) < 0 || (end !== undefined && Buffer.compare(continuation, end) >= 0)) {
      throw new Kvs2Error('INVALID_ARGUMENT', 'continuation does not belong to this range');
    }
    start = after;
  }
  // LMDB has no empty key; an empty start means "from the first key".
  return { start: start.length === 0 ? Buffer.of(0) : start, end };
}

/** The first key after every key that starts with `prefix`; undefined when there is none (all 0xff). */
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
