import type { Deadline } from '@grpc/grpc-js';
import { Kvs2Error } from '../errors.js';
import type { CallContext } from '../service/requests.js';

/** What a scope needs of a server call; every kind of grpc-js server call has it. */
export interface CancellableCall {
  readonly cancelled: boolean;
  getDeadline(): Deadline;
  once(event: 'cancelled', listener: () => void): unknown;
}

/**
 * The deadline and cancellation of one call, as the one AbortSignal that flows down to the log. It
 * aborts when the earlier of the client's deadline and the server's own per-call timeout passes, or when
 * the client cancels. The signal and its timer are made only when the work asks for them, so a local read
 * (answered at once) costs no timer. `done()` ends the scope once the call is answered.
 */
export class CallScope implements CallContext {
  readonly #call: CancellableCall;
  readonly #serverTimeoutMs: number;
  #controller: AbortController | undefined;
  #timer: NodeJS.Timeout | undefined;
  #done = false;

  constructor(call: CancellableCall, serverTimeoutMs: number) {
    this.#call = call;
    this.#serverTimeoutMs = serverTimeoutMs;
  }

  get signal(): AbortSignal {
    this.#controller ??= this.#start();
    return this.#controller.signal;
  }

  onEnd(release: () => void): void {
    // grpc-js emits 'cancelled' once the call's stream has closed, whether it was answered or not.
    if (this.#call.cancelled) release();
    else this.#call.once('cancelled', release);
  }

  done(): void {
    this.#done = true;
    clearTimeout(this.#timer);
  }

  #start(): AbortController {
    const controller = new AbortController();
    if (this.#call.cancelled) {
      controller.abort(new Kvs2Error('CANCELLED', 'the client cancelled the call'));
      return controller;
    }
    const deadline = this.#call.getDeadline();
    const clientMs = deadline instanceof Date ? deadline.getTime() - Date.now() : Number(deadline) - Date.now();
    const timeoutMs = Number.isFinite(clientMs)
      ? Math.max(0, Math.min(clientMs, this.#serverTimeoutMs))
      : this.#serverTimeoutMs;
    this.#timer = setTimeout(() => {
      controller.abort(new Kvs2Error('DEADLINE_EXCEEDED', `deadline of ${timeoutMs} ms exceeded`));
    }, timeoutMs);
    // grpc-js emits 'cancelled' at the end of every call, answered or not: only one that comes before
    // done() is the client giving up.
    this.#call.once('cancelled', () => {
      if (!this.#done) controller.abort(new Kvs2Error('CANCELLED', 'the client cancelled the call'));
    });
    return controller;
  }
}
