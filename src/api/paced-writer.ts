import type { ServerWritableStream } from '@grpc/grpc-js';
import { StallWatch } from '../stall-watch.js';

/**
 * Writes a server stream's messages no faster than HTTP/2 takes them, so that what waits to be sent stays in
 * the producer (a watch's bounded queue, a snapshot's unread entries), not in grpc-js's buffers. grpc-js
 * alone holds back up to 16 messages whatever their size; this also bounds the bytes written and not yet
 * taken (write callbacks come in order), and waits on 'drain'. HTTP/2 flow control is what stops the
 * stream: a client that stops reading stops granting window. With a stall limit, a client that takes no
 * message for that long while some wait (its reads, not its pace, are what counts) is reported once.
 */
export class PacedWriter<Message> {
  readonly #call: ServerWritableStream<unknown, Message>;
  readonly #maxUnsentBytes: number;
  readonly #signal: AbortSignal;
  /** Sizes of the messages written and not yet taken by HTTP/2, oldest first. */
  readonly #unsentSizes: number[] = [];
  #unsentBytes = 0;
  /** Bytes of the messages HTTP/2 took. */
  #takenBytes = 0;
  readonly #watch: StallWatch | null;
  #wake: (() => void) | undefined;
  readonly #wakeUp = (): void => {
    const resume = this.#wake;
    this.#wake = undefined;
    resume?.();
  };
  readonly #written = (): void => {
    const size = this.#unsentSizes.shift() ?? 0;
    this.#unsentBytes -= size;
    this.#takenBytes += size;
    // Progress: the wait for the receiver starts again, or ends when nothing is left unsent.
    if (this.#unsentSizes.length > 0) this.#watch?.arm();
    else this.#watch?.disarm();
    this.#wakeUp();
  };

  /**
   * Waits end when `signal` aborts, so that the caller can notice it. `stall`, if given, is told (once, with
   * the bytes HTTP/2 took) when messages wait `limitMs` with none of them taken; the caller then ends the call.
   */
  constructor(
    call: ServerWritableStream<unknown, Message>,
    maxUnsentBytes: number,
    signal: AbortSignal,
    stall: { readonly limitMs: number; readonly onStall: (takenBytes: number) => void } | null = null,
  ) {
    this.#watch = stall === null ? null : new StallWatch(stall.limitMs, () => stall.onStall(this.#takenBytes));
    this.#call = call;
    this.#maxUnsentBytes = maxUnsentBytes;
    this.#signal = signal;
    call.on('drain', this.#wakeUp);
    signal.addEventListener('abort', this.#wakeUp, { once: true });
  }

  /** Writes one message of about `bytes` bytes, then waits until there is room for the next (or the abort). */
  async write(message: Message, bytes: number): Promise<void> {
    if (this.#unsentSizes.length === 0) this.#watch?.arm();
    this.#unsentSizes.push(bytes);
    this.#unsentBytes += bytes;
    this.#call.write(message, this.#written);
    while (!this.#signal.aborted && (this.#call.writableNeedDrain || this.#unsentBytes > this.#maxUnsentBytes)) {
      await this.#sleep();
    }
  }

  /**
   * Waits until HTTP/2 took every message written (or the abort): the call's status goes out only after them,
   * so a receiver that stops reading near the end is still one the stall limit sees.
   */
  async flush(): Promise<void> {
    while (!this.#signal.aborted && this.#unsentSizes.length > 0) await this.#sleep();
  }

  #sleep(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#wake = resolve;
    });
  }

  /** Stops listening to the call and the signal, and watching for stalls. */
  close(): void {
    this.#watch?.close();
    this.#call.off('drain', this.#wakeUp);
    this.#signal.removeEventListener('abort', this.#wakeUp);
  }
}
