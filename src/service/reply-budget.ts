import { Kvs2Error } from '../errors.js';

/**
 * Bytes of replies the node holds for calls in flight, across all calls: what a reply takes from the moment
 * it is read from the store until its call ends (sent, failed or cancelled). Small requests can ask for
 * large replies, and a client that does not read them keeps them in memory; beyond the budget the node
 * sheds reads with OVERLOADED instead of holding more.
 */
export class ReplyBudget {
  readonly maxBytes: number;
  #held = 0;

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes;
  }

  /** Bytes that can still be taken. */
  get available(): number {
    return Math.max(0, this.maxBytes - this.#held);
  }

  get held(): number {
    return this.#held;
  }

  /** Takes `bytes` for a reply, or throws OVERLOADED when they do not fit. */
  take(bytes: number): void {
    if (this.#held + bytes > this.maxBytes) throw this.overloaded(bytes);
    this.#held += bytes;
  }

  /** The error of a reply of `bytes` that does not fit. */
  overloaded(bytes: number): Kvs2Error {
    return new Kvs2Error(
      'OVERLOADED',
      `the node holds ${this.#held} bytes of replies in flight and this one needs ${bytes} more ` +
        `(--max-reply-bytes-in-flight is ${this.maxBytes}); retry later`,
    );
  }

  release(bytes: number): void {
    this.#held -= bytes;
  }
}
