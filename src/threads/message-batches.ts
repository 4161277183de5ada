/**
 * Messages to one thread, sent together once the current turn's microtasks are done. A postMessage costs a
 * structured clone and a wake-up of the other thread; a group commit resolves dozens of appends in one
 * turn, and a gRPC read of one socket starts dozens of calls, so one message per turn instead of one per
 * call halves the main thread's cost of a Set served by a worker. Order is kept: a batch is sent whole, in
 * the order its messages were queued.
 */
export class MessageBatches<Message> {
  readonly #send: (messages: Message[]) => void;
  #queued: Message[] = [];
  #scheduled = false;

  constructor(send: (messages: Message[]) => void) {
    this.#send = send;
  }

  queue(message: Message): void {
    this.#queued.push(message);
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => this.flush());
  }

  /** Sends what is queued now (before the thread stops, say). */
  flush(): void {
    this.#scheduled = false;
    if (this.#queued.length === 0) return;
    const messages = this.#queued;
    this.#queued = [];
    this.#send(messages);
  }
}
