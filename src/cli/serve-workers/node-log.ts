import { abortError, type Kvs2Error } from '../../errors.js';
import type { LogBatch, LogPosition } from '../../log/log.js';
import type { Offsets } from '../../offsets.js';
import type { ConditionalMutation, ConditionalVerdict, ConditionalWriter } from '../../service/conditional-writes.js';
import type { LogAppender } from '../../service/kv-service.js';
import type { LogHistory } from '../../service/watch-session.js';
import type { NodeLink } from './node-link.js';
import { ownBytes } from './record-packing.js';
import { fromBatchMessage, fromWireError, toEntries, toOffsets } from './worker-messages.js';

/**
 * The node's log as a serving worker sees it: appends, end offsets and history reads go to the node, which
 * owns the one log (the embedded log has one writer; a Kafka client per thread would multiply connections
 * and the client's 0.4 s start). Signals keep their meaning: an aborted append is given up at the node.
 */
export class NodeLog implements LogAppender, LogHistory, ConditionalWriter {
  readonly #link: NodeLink;

  constructor(link: NodeLink) {
    this.#link = link;
  }

  append(key: Buffer, value: Buffer | null, signal: AbortSignal): Promise<LogPosition> {
    return this.#link.request(
      (id) => ({ type: 'append', id, key: ownBytes(key), value: value === null ? null : ownBytes(value) }),
      (reply) => {
        if (reply.type !== 'appended') throw new Error(`unexpected reply ${reply.type} to an append`);
        return reply.position;
      },
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
      (reply) => {
        if (reply.type !== 'written-if') throw new Error(`unexpected reply ${reply.type} to a conditional write`);
        return reply.verdict;
      },
      signal,
      'writing conditionally',
    );
  }

  endOffsets(signal: AbortSignal): Promise<Offsets> {
    return this.#link.request(
      (id) => ({ type: 'end-offsets', id }),
      (reply) => {
        if (reply.type !== 'end-offsets') throw new Error(`unexpected reply ${reply.type} to end-offsets`);
        return toOffsets(reply.offsets);
      },
      signal,
      "asking for the log's end",
    );
  }

  /** Batch by batch: the node reads the next one only when this one is taken, so nothing piles up here. */
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
      (reply) => {
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
