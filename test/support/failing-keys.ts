import { Kvs2Error } from '../../src/errors.js';
import type { LogPosition } from '../../src/log/log.js';
import type { Offsets } from '../../src/offsets.js';
import type { LogAppender } from '../../src/service/kv-service.js';
import type { MemoryLog } from './memory-log.js';

/**
 * Appends through the MemoryLog, but has it fail the appends of chosen keys, as a broker that refuses one
 * partition would: a Kvs2Error is raised by the log itself (failAppends, set for that one append; the
 * MemoryLog checks it before its first await when appends are not paused), anything else is thrown here.
 */
export class FailingKeys implements LogAppender {
  readonly failing = new Map<string, unknown>();
  readonly #log: MemoryLog;

  constructor(log: MemoryLog) {
    this.#log = log;
  }

  append(key: Buffer, value: Buffer | null, signal: AbortSignal): Promise<LogPosition> {
    const failure = this.failing.get(key.toString());
    if (failure === undefined) return this.#log.append(key, value, signal);
    if (!(failure instanceof Kvs2Error)) return Promise.reject(failure);
    this.#log.failAppends(failure);
    try {
      return this.#log.append(key, value, signal);
    } finally {
      this.#log.failAppends(null);
    }
  }

  endOffsets(): Promise<Offsets> {
    return this.#log.endOffsets();
  }
}
