import type { MessagePort } from 'node:worker_threads';
import { abortError, type Kvs2Error } from '../../errors.js';
import { MessageBatches } from './message-batches.js';
import { type FromWorker, fromWireError, type ToWorker } from './worker-messages.js';

type Reply = Extract<ToWorker, { id: number }>;

interface Pending {
  readonly onReply: (reply: Reply) => void;
  readonly fail: (error: Kvs2Error) => void;
}

/**
 * A serving worker's line to its node: requests with an id, answered by the node in a message of their own
 * (or `failed`). A request whose signal aborts is given up at once and the node is told, so that an append
 * not yet handed to the log is never written (the Log contract).
 */
export class NodeLink {
  readonly #out: MessageBatches<FromWorker>;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #closedWith: Kvs2Error | null = null;

  constructor(port: MessagePort) {
    this.#out = new MessageBatches((messages) => port.postMessage(messages));
  }

  send(message: FromWorker): void {
    this.#out.queue(message);
  }

  /** Sends what is queued at once (the worker is about to stop). */
  flush(): void {
    this.#out.flush();
  }

  /**
   * Sends the request `make(id)` builds and resolves with what `take` makes of the node's reply. Rejects with
   * the node's error, or the abort's.
   */
  request<T>(
    make: (id: number) => FromWorker,
    take: (reply: Reply) => T,
    signal: AbortSignal | undefined,
    what: string,
  ): Promise<T> {
    if (this.#closedWith !== null) return Promise.reject(this.#closedWith);
    if (signal?.aborted) return Promise.reject(abortError(signal, what));
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => {
        this.#pending.delete(id);
        this.send({ type: 'cancel', id });
        reject(abortError(signal as AbortSignal, what));
      };
      this.#pending.set(id, {
        onReply: (reply) => {
          signal?.removeEventListener('abort', onAbort);
          this.#pending.delete(id);
          if (reply.type === 'failed') reject(fromWireError(reply.error));
          else {
            try {
              resolve(take(reply));
            } catch (error) {
              reject(error);
            }
          }
        },
        fail: (error) => {
          signal?.removeEventListener('abort', onAbort);
          this.#pending.delete(id);
          reject(error);
        },
      });
      signal?.addEventListener('abort', onAbort, { once: true });
      this.send(make(id));
    });
  }

  /**
   * Registers a handler for every reply to one id (a history read gets many); returns its removal. The
   * caller tells the node to stop (`cancel`) itself.
   */
  stream(id: number, onReply: (reply: Reply) => void, fail: (error: Kvs2Error) => void): () => void {
    this.#pending.set(id, { onReply, fail });
    return () => this.#pending.delete(id);
  }

  nextId(): number {
    return this.#nextId++;
  }

  /** Routes a reply; false if no request waits for it (given up meanwhile). */
  deliver(reply: Reply): boolean {
    const pending = this.#pending.get(reply.id);
    if (pending === undefined) return false;
    pending.onReply(reply);
    return true;
  }

  /** Fails every request still waiting, and any made later, with this error (the worker is stopping). */
  close(error: Kvs2Error): void {
    this.#closedWith = error;
    for (const pending of [...this.#pending.values()]) pending.fail(error);
    this.#pending.clear();
  }
}
