import { Kvs2Error } from '../errors.js';
import { prefixEnd } from '../key-prefix.js';
import type { ScanRequest } from './requests.js';

/** The key range of one scan page: from `start` (inclusive, or exclusive after a page), to `end` (exclusive). */
export interface ScanBounds {
  readonly start: Buffer;
  /** True when `start` itself is excluded: it is the last key of the previous page. */
  readonly startExclusive: boolean;
  /** Undefined for no upper bound. */
  readonly end: Buffer | undefined;
}

/** The range a scan request covers, or INVALID_ARGUMENT when its fields contradict each other. */
export function scanBounds(request: ScanRequest): ScanBounds {
  const { prefix, continuation } = request;
  let start: Buffer;
  let end: Buffer | undefined;
  if (prefix.length > 0) {
    if (request.start.length > 0 || request.end.length > 0) {
      throw new Kvs2Error('INVALID_ARGUMENT', 'give either prefix or start/end, not both');
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
    if (Buffer.compare(continuation, start) < 0 || (end !== undefined && Buffer.compare(continuation, end) >= 0)) {
      throw new Kvs2Error('INVALID_ARGUMENT', 'continuation does not belong to this range');
    }
    // Continuing right after the last key returned, without building a longer key than the store takes.
    return { start: continuation, startExclusive: true, end };
  }
  // LMDB has no empty key; an empty start means "from the first key".
  return { start: start.length === 0 ? Buffer.of(0) : start, startExclusive: false, end };
}
