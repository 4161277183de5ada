import type { Kvs2Error } from '../errors.js';

/**
 * The fields of a snapshot's or a store image's JSON metadata, each read with its check: a refusal names
 * the field, what it holds and what it should be, through the format's own error (`invalid`), so that a
 * damaged or foreign file is refused with one clear message and never half-read.
 */
export class MetadataFields {
  readonly #raw: Record<string, unknown>;
  readonly #invalid: (why: string) => Kvs2Error;

  private constructor(raw: Record<string, unknown>, invalid: (why: string) => Kvs2Error) {
    this.#raw = raw;
    this.#invalid = invalid;
  }

  /** The metadata's JSON object; `invalid` makes the format's error from a reason. */
  static parse(body: Buffer, invalid: (why: string) => Kvs2Error): MetadataFields {
    let raw: unknown;
    try {
      raw = JSON.parse(body.toString('utf8'));
    } catch (error) {
      throw invalid(`its metadata is not JSON: ${(error as Error).message}`);
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalid('its metadata is not an object');
    return new MetadataFields(raw as Record<string, unknown>, invalid);
  }

  field(name: string): unknown {
    return this.#raw[name];
  }

  bad(name: string, expected: string): Kvs2Error {
    return this.#invalid(`its metadata field ${name} is ${JSON.stringify(this.field(name))}, not ${expected}`);
  }

  /** A whole number, 0 or more. */
  count(name: string): number {
    const value = this.field(name);
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw this.bad(name, 'a whole number');
    return value;
  }

  nullableCount(name: string): number | null {
    return this.field(name) === null ? null : this.count(name);
  }

  string(name: string): string {
    const value = this.field(name);
    if (typeof value !== 'string') throw this.bad(name, 'a string');
    return value;
  }

  /** The identity of the log the data came from: null (none yet), or "embedded:<id>" / "kafka:<id>". */
  logIdentity(): string | null {
    const value = this.field('logIdentity');
    if (value !== null && (typeof value !== 'string' || !/^(embedded|kafka):\S{1,200}$/.test(value))) {
      throw this.bad('logIdentity', 'null or "embedded:<id>" or "kafka:<id>"');
    }
    return value;
  }

  /** The applied offsets, an object of partition: next offset to apply. */
  appliedOffsets(): Map<number, number> {
    const value = this.field('appliedOffsets');
    const expected = 'an object of partition: offset';
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw this.bad('appliedOffsets', expected);
    const offsets = new Map<number, number>();
    for (const [partition, offset] of Object.entries(value)) {
      if (!/^\d+$/.test(partition) || typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) {
        throw this.bad('appliedOffsets', expected);
      }
      offsets.set(Number(partition), offset);
    }
    return offsets;
  }
}
