import { abortError, type Kvs2Error } from '../errors.js';
import type { LogBatch, LogPosition } from '../log/log.js';
import type { Offsets } from '../offsets.js';
import type { ConditionalMutation, ConditionalVerdict, ConditionalWriter } from '../service/conditional-writes.js';
import type { LogAppender } from '../service/kv-service.js';
import type { LogHistory } from '../service/watch-session.js';
import { ownBytes } from './record-packing.js';
import type { IdReply } from './thread-link.js';
import {
  fromBatchMessage,
  fromWireError,
  type LogReply,
  type LogRequest,
  toEntries,
  toOffsets,
} from './thread-messages.js';

/** What ForwardedLog uses of a ThreadLink, whatever else the link carries. */
export interface LogLink {
  send(message: LogRequest): void;
  request<T>(
    make: (id: number) => LogRequest,
    take: (reply: IdReply) => T,
    signal: AbortSignal | undefined,
    what: string,
  ): Promise<T>;
  stream(id: number, onReply: (reply: IdReply) => void, fail: (error: Kvs2Error) => void): () => void;
  nextId(): number;
}

/**
 * The log as a thread that does not own it sees it (a serving worker; the application thread of an
 * in-process replica whose replica runs on a worker): appends, end offsets and history reads go to the
 * thread that owns the one log (the embedded log has one writer; a Kafka client per thread would multiply
 * connections and the client's 0.4 s start). Signals keep their meaning: an aborted append is given up at
 * the owner. The link may carry other messages too; this sends only LogRequests.
 */
export class ForwardedLog implements LogAppender, LogHistory, ConditionalWriter {
  readonly #link: LogLink;

  constructor(link: LogLink) {
    this.#link = link;
  }

  append(key: Buffer, value: Buffer | null, signal: AbortSignal): Promise<LogPosition> {
    return this.#link.request(
      (id) => ({ type: 'append', id, key: ownBytes(key), value: value === null ? null : ownBytes(value) }),
      (reply) => expect(reply, 'appended', 'an append').position,
      signal,
      'appending to the log',
    );
  }

  writeIf(mutations: readonly ConditionalMutation[], signal: AbortSignal): Promise<ConditionalVerdict> {
    return this.#link.request(
      (id) => ({
        type: 'write-if',
        id,
        mutations: mutations.map(({ key, value, condition }) => ({
          key: ownBytes(key),
          value: value === null ? null : ownBytes(value),
          condition,
        })),
      }),
      (reply) => expect(reply, 'written-if', 'a conditional write').verdict,
      signal,
      'writing conditionally',
    );
  }

  endOffsets(signal: AbortSignal): Promise<Offsets> {
    return this.#link.request(
      (id) => ({ type: 'end-offsets', id }),
      (reply) => toOffsets(expect(reply, 'end-offsets', 'end-offsets').offsets),
      signal,
      "asking for the log's end",
    );
  }

  /** Batch by batch: the owner reads the next one only when this one is taken, so nothing piles up here. */
  async *read(from: Offsets, signal: AbortSignal): AsyncIterable<LogBatch> {
    const link = this.#link;
    const id = link.nextId();
    const arrived: LogBatch[] = [];
    let failure: Kvs2Error | null = null;
    let wake: (() => void) | null = null;
    const wakeUp = (): void => {
      wake?.();
      wake = null;
    };
    const stop = link.stream(
      id,
      (received) => {
        // A history read is answered only with batches or its failure.
        const reply = received as LogReply;
        if (reply.type === 'history-batch') arrived.push(fromBatchMessage(reply.batch));
        else if (reply.type === 'failed') failure = fromWireError(reply.error);
        wakeUp();
      },
      (error) => {
        failure = error;
        wakeUp();
      },
    );
    const onAbort = (): void => wakeUp();
    signal.addEventListener('abort', onAbort, { once: true });
    link.send({ type: 'history', id, from: toEntries(from) });
    try {
      for (;;) {
        if (signal.aborted) throw abortError(signal, 'reading the log');
        const batch = arrived.shift();
        if (batch !== undefined) {
          yield batch;
          link.send({ type: 'history-next', id });
          continue;
        }
        if (failure !== null) throw failure;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      stop();
      link.send({ type: 'cancel', id });
    }
  }
}

/** The owner's reply of the kind a request expects (`failed` never comes here: the link rejects it). */
function expect<K extends LogReply['type']>(reply: IdReply, type: K, what: string): Extract<LogReply, { type: K }> {
  if (reply.type !== type) throw new Error(`unexpected reply ${reply.type} to ${what}`);
  return reply as Extract<LogReply, { type: K }>;
}
