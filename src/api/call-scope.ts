import type { Deadline } from '@grpc/grpc-js';
import { Kvs2Error } from '../errors.js';

/** What a scope needs of a server call; every kind of grpc-js server call has it. */
export interface CancellableCall {
  getDeadline(): Deadline;
  once(event: 'cancelled', listener: () => void): unknown;
}

/**
 * The cancellation scope of one call: aborts when the earlier of the client's deadline and the server's
 * own per-call timeout passes, or when the client cancels. `done()` releases the timer and ends the scope.
 */
export class CallScope {
  readonly #controller = new AbortController();
  readonly #timer: NodeJS.Timeout;
  #done = false;

  constructor(call: CancellableCall, serverTimeoutMs: number) {
    const deadline = call.getDeadline();
    const clientMs = deadline instanceof Date ? deadline.getTime() - Date.now() : Number(deadline) - Date.now();
    const timeoutMs = Number.isFinite(clientMs) ? Math.max(0, Math.min(clientMs, serverTimeoutMs)) : serverTimeoutMs;
    this.#timer = setTimeout(() => {
      this.#controller.abort(new Kvs2Error('DEADLINE_EXCEEDED', `deadline of ${timeoutMs} ms exceeded`));
    }, timeoutMs);
    // grpc-js emits 'cancelled' at the end of every call, answered or not: only one that comes before
    // done() is the client giving up (and building an error with its stack for every call costs ~2% CPU).
    call.once('cancelled', () => {
      if (!this.#done) this.#controller.abort(new Kvs2Error('CANCELLED', 'the client cancelled the call'));
    });
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  done(): void {
    this.#done = true;
    clearTimeout(this.#timer);
  }
}
