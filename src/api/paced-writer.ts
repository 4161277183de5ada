import type { ServerWritableStream } from '@grpc/grpc-js';

/**
 * Writes a server stream's messages no faster than HTTP/2 takes them, so that what waits to be sent stays in
 * the producer (a watch's bounded queue, a snapshot's unread entries), not in grpc-js's buffers. grpc-js
 * alone holds back up to 16 messages whatever their size; this also bounds the bytes written and not yet
 * taken (write callbacks come in order), and waits on 'drain'. HTTP/2 flow control is what stops the
 * stream: a client that stops reading stops granting window.
 */
export class PacedWriter<Message> {
  readonly #call: ServerWritableStream<unknown, Message>;
  readonly #maxUnsentBytes: number;
  readonly #signal: AbortSignal;
  /** Sizes of the messages written and not yet taken by HTTP/2, oldest first. */
  readonly #unsentSizes: number[] = [];
  #unsentBytes = 0;
  #wake: (() => void) | undefined;
  readonly #wakeUp = (): void => {
    const resume = this.#wake;
    this.#wake = undefined;
    resume?.();
  };
  readonly #written = (): void => {
    this.#unsentBytes -= this.#unsentSizes.shift() ?? 0;
    if (this.#unsentBytes <= this.#maxUnsentBytes) this.#wakeUp();
  };

  /** Waits end when `signal` aborts, so that the caller can notice it. */
  constructor(call: ServerWritableStream<unknown, Message>, maxUnsentBytes: number, signal: AbortSignal) {
    this.#call = call;
    this.#maxUnsentBytes = maxUnsentBytes;
    this.#signal = signal;
    call.on('drain', this.#wakeUp);
    signal.addEventListener('abort', this.#wakeUp, { once: true });
  }

  /** Writes one message of about `bytes` bytes, then waits until there is room for the next (or the abort). */
  async write(message: Message, bytes: number): Promise<void> {
    this.#unsentSizes.push(bytes);
    this.#unsentBytes += bytes;
    this.#call.write(message, this.#written);
    while (!this.#signal.aborted && (this.#call.writableNeedDrain || this.#unsentBytes > this.#maxUnsentBytes)) {
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }

  /** Stops listening to the call and the signal. */
  close(): void {
    this.#call.off('drain', this.#wakeUp);
    this.#signal.removeEventListener('abort', this.#wakeUp);
  }
}
