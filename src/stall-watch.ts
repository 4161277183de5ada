/**
 * Watches a transfer for a side that stops moving bytes: armed only while this side waits for the other
 * (a receiver for the sender's next bytes, not while the caller holds a chunk: a slow disk on this side is no
 * stall of the sender's; a sender for the receiver to take what was written), it calls `onStall` once, when
 * one wait lasts `limitMs` without the wait being renewed (arm() again on progress). A progress limit, not a
 * deadline: a large transfer that keeps moving takes as long as it takes. One timer, rearmed per wait
 * without a new one. A base module: the client's receive side and the node's send side both use it.
 */
export class StallWatch {
  readonly limitMs: number;
  #armed = false;
  #stalled = false;
  readonly #timer: NodeJS.Timeout;

  constructor(limitMs: number, onStall: () => void) {
    this.limitMs = limitMs;
    this.#timer = setTimeout(() => {
      if (!this.#armed || this.#stalled) return;
      this.#stalled = true;
      onStall();
    }, limitMs);
  }

  /** Whether a wait outlasted the limit (and `onStall` was called). */
  get stalled(): boolean {
    return this.#stalled;
  }

  /** A wait for the sender begins now. */
  arm(): void {
    this.#armed = true;
    // Restarts the timer, and starts it again if it fired while disarmed.
    this.#timer.refresh();
  }

  /** The sender answered (or the wait ended otherwise). */
  disarm(): void {
    this.#armed = false;
  }

  close(): void {
    this.#armed = false;
    clearTimeout(this.#timer);
  }
}
