import { Kvs2Error } from '../errors.js';
import type { RequestChecks } from '../service/request-checks.js';
import { scanBounds } from '../service/scan-range.js';
import type { KeyValueReader } from '../store/store.js';
import type { ConsistencyToken, ReplicaEntry, ReplicaScanRange } from './replica-api.js';

/** Effectively no limit for a scan: the one reads what it asks for, in this process's memory. */
const NO_LIMIT = Number.MAX_SAFE_INTEGER - 2;
const EMPTY = Buffer.alloc(0);

/**
 * The synchronous reads of `kvs2/replica` (get, getMany, scan), shared by the in-process replica and the
 * co-located reader so that both check keys and ranges, and answer, exactly alike: a lookup in a local
 * LMDB store, checked as a node checks a request (RequestChecks, scanBounds).
 */
export class LocalReads {
  readonly #checks: RequestChecks;

  constructor(checks: RequestChecks) {
    this.#checks = checks;
  }

  get(store: KeyValueReader, key: Uint8Array): Buffer | undefined {
    return store.get(this.checkKey(key, 'key'));
  }

  /** The key with its value and version, or undefined. */
  getEntry(store: KeyValueReader, key: Uint8Array): ReplicaEntry | undefined {
    const k = asBuffer(key);
    this.#checks.key(k, 'key');
    const value = store.get(k);
    return value === undefined ? undefined : { key: k, value, version: store.lastVersion };
  }

  /** One value per key in order (undefined where absent), read one after the other. */
  getMany(store: KeyValueReader, keys: readonly Uint8Array[]): Array<Buffer | undefined> {
    const values: Array<Buffer | undefined> = new Array(keys.length);
    for (let i = 0; i < keys.length; i++) values[i] = store.get(this.checkKey(keys[i] as Uint8Array, `keys[${i}]`));
    return values;
  }

  /** The key as a Buffer, checked as a node checks a request's key; INVALID_ARGUMENT naming `field`. */
  checkKey(key: Uint8Array, field: string): Buffer {
    const k = asBuffer(key);
    this.#checks.key(k, field);
    return k;
  }

  /** Checks every key of a getMany, without reading (a read that waits checks them before it waits). */
  checkKeys(keys: readonly Uint8Array[]): void {
    for (let i = 0; i < keys.length; i++) this.checkKey(keys[i] as Uint8Array, `keys[${i}]`);
  }

  /** Keys and values in byte order, from one consistent LMDB snapshot; `limit`: most entries. */
  scan(store: KeyValueReader, range: ReplicaScanRange, limit?: number): ReplicaEntry[] {
    if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1)) {
      throw new Kvs2Error('INVALID_ARGUMENT', `limit must be a positive integer, got ${limit}`);
    }
    const prefix = 'prefix' in range ? asBuffer(range.prefix) : EMPTY;
    const start = 'start' in range ? asBuffer(range.start) : EMPTY;
    const end = 'start' in range && range.end !== undefined ? asBuffer(range.end) : EMPTY;
    this.#checks.keyBound(prefix, 'prefix');
    this.#checks.keyBound(start, 'start');
    this.#checks.keyBound(end, 'end');
    const bounds = scanBounds({
      prefix,
      start,
      end,
      continuation: EMPTY,
      limit: 0,
      keysOnly: false,
      consistency: 'local',
      after: [],
    });
    const page = store.scan({
      ...bounds,
      limit: limit ?? NO_LIMIT,
      maxBytes: Number.POSITIVE_INFINITY,
      keysOnly: false,
    });
    return page.items.map((item) => ({ key: item.key, value: item.value ?? EMPTY, version: item.version }));
  }
}

/** The tokens of an `...After` read, as one or several. */
export function tokensOf(after: ConsistencyToken | readonly ConsistencyToken[]): Buffer[] {
  const tokens = after instanceof Uint8Array ? [after] : after;
  if (!Array.isArray(tokens)) throw new Kvs2Error('INVALID_ARGUMENT', 'after is a token or an array of tokens');
  return tokens.map(asBuffer);
}

/** A Buffer view of the caller's bytes (no copy); INVALID_ARGUMENT for anything that is not bytes. */
export function asBuffer(bytes: Uint8Array): Buffer {
  if (Buffer.isBuffer(bytes)) return bytes;
  if (!(bytes instanceof Uint8Array)) throw new Kvs2Error('INVALID_ARGUMENT', 'keys and tokens are bytes (Uint8Array)');
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
