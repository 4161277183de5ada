import { Kvs2Error } from '../errors.js';
import type { Log } from '../log/log.js';
import type { ConditionalWriter } from '../service/conditional-writes.js';
import { asBuffer } from './record-packing.js';
import {
  type LogReply,
  type LogRequest,
  type OffsetEntries,
  toBatchMessage,
  toEntries,
  toOffsets,
  toWireError,
} from './thread-messages.js';

export interface LogRequestsOptions {
  readonly log: Pick<Log, 'append' | 'endOffsets' | 'read'>;
  /** Decides the conditional writes the other thread passes on. */
  readonly conditional: ConditionalWriter;
  /** Sends a reply to the thread that asked. */
  readonly post: (reply: LogReply) => void;
}

/**
 * The log owner's side of ForwardedLog: runs what one reading thread asks of the log (appends, conditional
 * writes, the log's end, a watch's history) with a signal that thread can abort (`cancel`), and posts the
 * answers. One per reading thread; `abortAll` when that thread is gone.
 */
export class LogRequests {
  readonly #options: LogRequestsOptions;
  /** Appends, end-offset queries and history reads in flight, by the reading thread's request id. */
  readonly #requests = new Map<number, AbortController>();
  /** History reads waiting for the reading thread to take their last batch. */
  readonly #historyNext = new Map<number, () => void>();

  constructor(options: LogRequestsOptions) {
    this.#options = options;
  }

  take(message: LogRequest): void {
    const { log, conditional } = this.#options;
    switch (message.type) {
      case 'write-if': {
        const { id } = message;
        const mutations = message.mutations.map(({ key, value, condition }) => ({
          key: asBuffer(key),
          value: value === null ? null : asBuffer(value),
          condition,
        }));
        this.#answer(id, (signal) =>
          conditional.writeIf(mutations, signal).then((verdict) => ({ type: 'written-if', id, verdict })),
        );
        return;
      }
      case 'append': {
        const { id } = message;
        const value = message.value === null ? null : asBuffer(message.value);
        this.#answer(id, (signal) =>
          log.append(asBuffer(message.key), value, signal).then((position) => ({ type: 'appended', id, position })),
        );
        return;
      }
      case 'end-offsets': {
        const { id } = message;
        this.#answer(id, (signal) =>
          log.endOffsets(signal).then((offsets) => ({ type: 'end-offsets', id, offsets: toEntries(offsets) })),
        );
        return;
      }
      case 'history':
        void this.#history(message.id, message.from);
        return;
      case 'history-next':
        this.#historyNext.get(message.id)?.();
        return;
      case 'cancel':
        this.#requests.get(message.id)?.abort(new Kvs2Error('CANCELLED', 'the call ended'));
        return;
    }
  }

  /** The reading thread is gone: every request it made is given up. */
  abortAll(): void {
    for (const controller of this.#requests.values()) controller.abort();
    this.#requests.clear();
  }

  /** Runs one request with a signal the reading thread can abort, and posts its answer. */
  #answer(id: number, run: (signal: AbortSignal) => Promise<LogReply>): void {
    const controller = new AbortController();
    this.#requests.set(id, controller);
    run(controller.signal).then(
      (reply) => {
        this.#requests.delete(id);
        this.#options.post(reply);
      },
      (error: unknown) => {
        this.#requests.delete(id);
        this.#options.post({ type: 'failed', id, error: toWireError(error) });
      },
    );
  }

  /** A watch's replay: the log from `from`, one batch at a time, each sent when the reader took the last. */
  async #history(id: number, from: OffsetEntries): Promise<void> {
    const controller = new AbortController();
    this.#requests.set(id, controller);
    const { signal } = controller;
    // One listener for the whole replay: a cancel wakes the wait for the batch in hand.
    signal.addEventListener('abort', () => this.#historyNext.get(id)?.(), { once: true });
    try {
      for await (const batch of this.#options.log.read(toOffsets(from), signal)) {
        const taken = new Promise<void>((resolve) => this.#historyNext.set(id, resolve));
        this.#options.post({ type: 'history-batch', id, batch: toBatchMessage(batch) });
        await taken;
        if (signal.aborted) return;
      }
    } catch (error) {
      if (!signal.aborted) this.#options.post({ type: 'failed', id, error: toWireError(error) });
    } finally {
      this.#requests.delete(id);
      this.#historyNext.delete(id);
    }
  }
}
