import assert from 'node:assert/strict';
import { isKvs2Error, type Kvs2Error, type Kvs2ErrorCode } from '../../src/errors.js';
import type { Answer, CallContext, ReadOptions, ScanRequest } from '../../src/service/requests.js';

export const b = (text: string): Buffer => Buffer.from(text);
export const EMPTY = Buffer.alloc(0);

/**
 * The context of one call in a test. What the call holds (reply bytes) is released when `end()` is called;
 * until then it counts against the service's budget, as a reply not yet sent would.
 */
export class TestCall implements CallContext {
  readonly signal: AbortSignal;
  readonly #releases: Array<() => void> = [];

  constructor(signal: AbortSignal = new AbortController().signal) {
    this.signal = signal;
  }

  onEnd(release: () => void): void {
    this.#releases.push(release);
  }

  end(): void {
    for (const release of this.#releases.splice(0)) release();
  }
}

/** A call that ends with the given signal, and releases what it holds at once: its answer is taken and gone. */
export function withSignal(signal: AbortSignal): CallContext {
  return { signal, onEnd: (release) => release() };
}

/** A call that nothing cancels and no deadline ends. */
export function noDeadline(): CallContext {
  return withSignal(new AbortController().signal);
}

/** Read options of the default, local read. */
export const LOCAL: ReadOptions = { consistency: 'local', after: [] };

/** A ScanRequest with the protobuf defaults, overridden by `fields`. */
export function scanRequest(fields: Partial<ScanRequest>): ScanRequest {
  return {
    prefix: EMPTY,
    start: EMPTY,
    end: EMPTY,
    limit: 0,
    keysOnly: false,
    continuation: EMPTY,
    ...LOCAL,
    ...fields,
  };
}

/** The answer of a read that must not wait: it is there at once, not a promise. */
export function now<T>(answer: Answer<T>): T {
  if (answer instanceof Promise) assert.fail('the read answered with a promise, not at once');
  return answer;
}

/** The Kvs2Error a call fails with, whether it throws at once or rejects. */
export async function failureOf(call: () => unknown): Promise<Kvs2Error> {
  try {
    await call();
  } catch (error) {
    assert.ok(isKvs2Error(error), `expected a Kvs2Error, got ${String(error)}`);
    return error;
  }
  assert.fail('the call succeeded');
}

/** Asserts the call fails with `code`, and, when given, a message that matches `message`. */
export async function assertFails(call: () => unknown, code: Kvs2ErrorCode, message?: RegExp): Promise<Kvs2Error> {
  const error = await failureOf(call);
  assert.equal(error.code, code, error.message);
  if (message !== undefined) assert.match(error.message, message);
  return error;
}
