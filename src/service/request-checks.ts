import type { Limits } from '../config/config.js';
import { STORE_MAX_KEY_BYTES } from '../config/limits.js';
import { Kvs2Error } from '../errors.js';
import type { MutationRequest, ReadOptions, WatchRequest, WriteCondition } from './requests.js';

/** Most tokens one read may wait for. */
export const MAX_TOKENS_PER_CALL = 1000;
/** Largest token accepted: room for ~95,000 partitions, far beyond what a topic has. */
export const MAX_TOKEN_BYTES = 1024 * 1024;

/**
 * Every check of user input against the limits, in one place: each throws INVALID_ARGUMENT with a message
 * naming the field, so that a client error is never reported as a server failure further down.
 */
export class RequestChecks {
  readonly #limits: Limits;

  constructor(limits: Limits) {
    this.#limits = limits;
  }

  /** A key to read or write: 1 to --max-key-bytes bytes. */
  key(key: Buffer, field: string): void {
    if (key.length === 0) throw invalid(`${field} is empty; keys must have at least one byte`);
    this.#atMost(key, this.#limits.maxKeyBytes, field, '--max-key-bytes');
  }

  /** A bound of a key range (a prefix, a start, an end): may be empty. */
  keyBound(bound: Buffer, field: string): void {
    this.#atMost(bound, this.#limits.maxKeyBytes, field, '--max-key-bytes');
  }

  /**
   * A key the node itself returned (a scan's continuation): it may be any key the store holds, which
   * other producers may have written longer than --max-key-bytes, up to the store's own limit.
   */
  storedKey(key: Buffer, field: string): void {
    if (key.length > STORE_MAX_KEY_BYTES) {
      throw invalid(`${field} is ${key.length} bytes; no stored key is longer than ${STORE_MAX_KEY_BYTES}`);
    }
  }

  value(value: Buffer, field: string): void {
    this.#atMost(value, this.#limits.maxValueBytes, field, '--max-value-bytes');
  }

  /** How many keys or mutations one call carries. */
  count(count: number, rpc: string, what: string): void {
    if (count > this.#limits.maxBatchKeys) {
      throw invalid(
        `${rpc} asked for ${count} ${what}; at most ${this.#limits.maxBatchKeys} are allowed per call (--max-batch-keys)`,
      );
    }
  }

  mutations(mutations: readonly MutationRequest[]): void {
    this.count(mutations.length, 'Write', 'mutations');
    for (let i = 0; i < mutations.length; i++) {
      const { key, value, delete: isDelete } = mutations[i] as MutationRequest;
      this.key(key, `mutations[${i}].key`);
      if (isDelete && value.length > 0) {
        throw invalid(`mutations[${i}] is a delete with a value; give a value or delete, not both`);
      }
      this.value(value, `mutations[${i}].value`);
    }
  }

  /** A version to compare with must be one a write can have: 1 or more (absent is CONDITION_ABSENT). */
  condition(condition: WriteCondition | null, field: string): void {
    if (condition?.kind !== 'version') return;
    const { version } = condition;
    if (!Number.isSafeInteger(version) || version < 1) {
      throw invalid(
        `${field}.version is ${version}; a version is at least 1 (to require that the key is absent, use CONDITION_ABSENT)`,
      );
    }
  }

  readOptions(options: ReadOptions): void {
    if (options.consistency === 'at-least' && options.after.length === 0) {
      throw invalid('CONSISTENCY_AT_LEAST needs at least one token in `after`');
    }
    if (options.after.length > MAX_TOKENS_PER_CALL) {
      throw invalid(`after has ${options.after.length} tokens; at most ${MAX_TOKENS_PER_CALL} are allowed`);
    }
    for (let i = 0; i < options.after.length; i++) this.token(options.after[i] as Buffer, `after[${i}]`);
  }

  token(token: Buffer, field: string): void {
    if (token.length > MAX_TOKEN_BYTES) {
      throw invalid(`${field} is ${token.length} bytes; no token is longer than ${MAX_TOKEN_BYTES}`);
    }
  }

  watch(request: WatchRequest): void {
    if (request.key.length > 0 && request.prefix.length > 0) throw invalid('give either key or prefix, not both');
    this.keyBound(request.key, 'key');
    this.keyBound(request.prefix, 'prefix');
    this.token(request.after, 'after');
  }

  /** A page size: 0 (the default) to --max-batch-keys. */
  pageLimit(limit: number): void {
    if (limit > this.#limits.maxBatchKeys) {
      throw invalid(`limit is ${limit}; at most ${this.#limits.maxBatchKeys} keys per page (--max-batch-keys)`);
    }
  }

  #atMost(bytes: Buffer, max: number, field: string, setting: string): void {
    if (bytes.length > max) throw invalid(`${field} is ${bytes.length} bytes; at most ${max} are allowed (${setting})`);
  }
}

function invalid(message: string): Kvs2Error {
  return new Kvs2Error('INVALID_ARGUMENT', message);
}
