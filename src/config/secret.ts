import { inspect } from 'node:util';

const REDACTED = '[redacted]';

/**
 * A secret read from the environment (a password): it can be used, never shown. Every way an object reaches
 * a log line (pino's JSON, util.inspect, string conversion) prints "[redacted]", so a config or an error that
 * carries one cannot leak it.
 */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  /** The secret itself: for the one call that needs it. */
  reveal(): string {
    return this.#value;
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return REDACTED;
  }
}
