import { abortError, type Kvs2Error } from '../errors.js';
import { MessageBatches } from './message-batches.js';
import { type FailedReply, fromWireError } from './thread-messages.js';

/** Gives up a request whose call ended (every owner takes it: LogRequest has it). */
type CancelRequest = { readonly type: 'cancel'; readonly id: number };

/** A reply to one request: it names the request's id. */
export interface IdReply {
  readonly type: string;
  readonly id: number;
}

interface Pending<Reply> {
  readonly onReply: (reply: Reply) => void;
  readonly fail: (error: Kvs2Error) => void;
}

/**
 * A reading thread's line to the thread that owns the log (a serving worker's to its node; the in-process
 * replica's application thread's to its replica worker): requests with an id, answered by the owner in a
 * message of their own (or `failed`). A request whose signal aborts is given up at once and the owner is
 * told, so that an append not yet handed to the log is never written (the Log contract). `Out` is what
 * this side sends (with `cancel` among it), `Reply` the owner's answers.
 */
export class ThreadLink<Out extends { readonly type: string }, Reply extends IdReply> {
  readonly #out: MessageBatches<Out | CancelRequest>;
  readonly #pending = new Map<number, Pending<Reply | FailedReply>>();
  #nextId = 1;
  #closedWith: Kvs2Error | null = null;

  constructor(port: { postMessage(messages: unknown): void }) {
    this.#out = new MessageBatches((messages) => port.postMessage(messages));
  }

  send(message: Out | CancelRequest): void {
    this.#out.queue(message);
  }

  /** Sends what is queued at once (the thread is about to stop). */
  flush(): void {
    this.#out.flush();
  }

  /**
   * Sends the request `make(id)` builds and resolves with what `take` makes of the owner's reply. Rejects with
   * the owner's error, or the abort's.
   */
  request<T>(
    make: (id: number) => Out,
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
          if (isFailed(reply)) reject(fromWireError(reply.error));
          else {
            try {
              resolve(take(reply as Reply));
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
   * caller tells the owner to stop (`cancel`) itself.
   */
  stream(id: number, onReply: (reply: Reply | FailedReply) => void, fail: (error: Kvs2Error) => void): () => void {
    this.#pending.set(id, { onReply, fail });
    return () => this.#pending.delete(id);
  }

  nextId(): number {
    return this.#nextId++;
  }

  /** Routes a reply; false if no request waits for it (given up meanwhile). */
  deliver(reply: Reply | FailedReply): boolean {
    const pending = this.#pending.get(reply.id);
    if (pending === undefined) return false;
    pending.onReply(reply);
    return true;
  }

  /** Fails every request still waiting, and any made later, with this error (the thread is stopping). */
  close(error: Kvs2Error): void {
    this.#closedWith = error;
    for (const pending of [...this.#pending.values()]) pending.fail(error);
    this.#pending.clear();
  }
}

function isFailed(reply: IdReply): reply is FailedReply {
  return reply.type === 'failed';
}
