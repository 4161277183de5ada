import type { Limits } from '../config/config.js';
import { abortError, Kvs2Error } from '../errors.js';
import type { LogPosition } from '../log/log.js';
import type { KeyValueReader } from '../store/store.js';

/** The write side the service needs: any log. */
export interface LogAppender {
  append(key: Buffer, value: Buffer | null, signal?: AbortSignal): Promise<LogPosition>;
}

export interface KvServiceOptions {
  readonly log: LogAppender;
  readonly store: KeyValueReader;
  readonly limits: Limits;
}

/**
 * The operations of kvs2, independent of the wire: reads come from the local store, writes go to the log
 * (and reach the store through the replica, like everyone else's). Validates every input against the
 * configured limits and throws Kvs2Error.
 */
export class KvService {
  readonly #log: LogAppender;
  readonly #store: KeyValueReader;
  readonly #limits: Limits;
  #closed = false;

  constructor(options: KvServiceOptions) {
    this.#log = options.log;
    this.#store = options.store;
    this.#limits = options.limits;
  }

  /** The value of a key, or undefined when the key does not exist. */
  get(key: Buffer): Buffer | undefined {
    this.#checkKey(key, 'key');
    return this.#store.get(key);
  }

  /** One answer per key, in request order (duplicates included). */
  getMany(keys: readonly Buffer[]): Array<Buffer | undefined> {
    const { maxBatchKeys, maxReplyBytes } = this.#limits;
    if (keys.length > maxBatchKeys) {
      throw new Kvs2Error(
        'INVALID_ARGUMENT',
        `MultiGet asked for ${keys.length} keys; at most ${maxBatchKeys} are allowed per call`,
      );
    }
    for (let i = 0; i < keys.length; i++) this.#checkKey(keys[i] as Buffer, `keys[${i}]`);
    // Read key by key and stop as soon as the reply outgrows the limit, so that a request for many big
    // values never holds more than the limit in memory.
    const values: Array<Buffer | undefined> = new Array(keys.length);
    let replyBytes = 0;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i] as Buffer;
      const value = this.#store.get(key);
      values[i] = value;
      replyBytes += key.length + (value?.length ?? 0);
      if (replyBytes > maxReplyBytes) {
        throw new Kvs2Error(
          'REPLY_TOO_LARGE',
          `MultiGet reply would hold more than ${maxReplyBytes} bytes of keys and values (reached at keys[${i}]); ` +
            'ask for fewer keys per call',
        );
      }
    }
    return values;
  }

  /** Publishes the value to the log; resolves once the log holds it durably. */
  async set(key: Buffer, value: Buffer, signal?: AbortSignal): Promise<LogPosition> {
    this.#checkKey(key, 'key');
    if (value.length > this.#limits.maxValueBytes) {
      throw new Kvs2Error(
        'INVALID_ARGUMENT',
        `value is ${value.length} bytes; at most ${this.#limits.maxValueBytes} are allowed`,
      );
    }
    return this.#publish(key, value, signal);
  }

  /** After close, writes fail with SHUTTING_DOWN; reads keep working until the store closes. */
  close(): void {
    this.#closed = true;
  }

  #publish(key: Buffer, value: Buffer | null, signal: AbortSignal | undefined): Promise<LogPosition> {
    if (this.#closed) return Promise.reject(new Kvs2Error('SHUTTING_DOWN', 'the node is shutting down'));
    if (signal === undefined) return this.#log.append(key, value);
    if (signal.aborted) return Promise.reject(abortError(signal, 'write'));
    return raceAbort(this.#log.append(key, value, signal), signal, 'write');
  }

  #checkKey(key: Buffer, what: string): void {
    if (key.length === 0) throw new Kvs2Error('INVALID_ARGUMENT', `${what} is empty; keys must have at least one byte`);
    if (key.length > this.#limits.maxKeyBytes) {
      throw new Kvs2Error(
        'INVALID_ARGUMENT',
        `${what} is ${key.length} bytes; at most ${this.#limits.maxKeyBytes} are allowed`,
      );
    }
  }
}

/**
 * Settles with `work` or, if the signal aborts first, rejects with the abort's error. The work itself
 * goes on: a write that timed out may still land, as with any database.
 */
function raceAbort<T>(work: Promise<T>, signal: AbortSignal, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortError(signal, what));
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (result) => {
        signal.removeEventListener('abort', onAbort);
        resolve(result);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
