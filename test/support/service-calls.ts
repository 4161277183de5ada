import assert from 'node:assert/strict';
import { isKvs2Error, type Kvs2Error, type Kvs2ErrorCode } from '../../src/errors.js';
import type { Answer, CallContext, ReadOptions } from '../../src/service/requests.js';

export const b = (text: string): Buffer => Buffer.from(text);
export const EMPTY = Buffer.alloc(0);

/** A call that nothing cancels and no deadline ends. */
export function noDeadline(): CallContext {
  return { signal: new AbortController().signal };
}

/** Read options of the default, local read. */
export const LOCAL: ReadOptions = { consistency: 'local', after: [] };

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
