import type { Logger } from '../logger.js';

/** Why a call was refused, the `reason` label of kvs2_auth_failures_total. */
export type AuthFailureReason = 'no_token' | 'bad_token' | 'permission_denied' | 'verification_overloaded';

export interface AuthFailure {
  readonly reason: AuthFailureReason;
  readonly identity: string | null;
  readonly method: string;
  readonly peer: string;
  readonly message: string;
}

/** Lines per window; beyond it failures are only counted, and one summary line follows the window. */
const MAX_LINES_PER_WINDOW = 20;
const WINDOW_MS = 10_000;

/**
 * Logs refused calls, at most MAX_LINES_PER_WINDOW per WINDOW_MS so that a flood of bad calls cannot fill
 * the disk; what it leaves out is summed in one line at the end of the window.
 */
export class AuthFailureLog {
  readonly #logger: Logger;
  #windowStart = 0;
  #logged = 0;
  #suppressed = 0;
  #summary: NodeJS.Timeout | undefined;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  record(failure: AuthFailure): void {
    const now = Date.now();
    if (now - this.#windowStart >= WINDOW_MS) {
      this.#windowStart = now;
      this.#logged = 0;
    }
    if (this.#logged < MAX_LINES_PER_WINDOW) {
      this.#logged++;
      this.#logger.warn(
        { reason: failure.reason, identity: failure.identity, method: failure.method, peer: failure.peer },
        `call refused: ${failure.message}`,
      );
      return;
    }
    this.#suppressed++;
    // One timer per window with suppressed lines; unref'd so it never keeps the process alive.
    this.#summary ??= setTimeout(() => this.#flush(), this.#windowStart + WINDOW_MS - now).unref();
  }

  #flush(): void {
    this.#summary = undefined;
    if (this.#suppressed === 0) return;
    this.#logger.warn(
      { suppressed: this.#suppressed, windowMs: WINDOW_MS },
      `${this.#suppressed} more refused calls not logged (at most ${MAX_LINES_PER_WINDOW} lines per ${WINDOW_MS / 1000} s)`,
    );
    this.#suppressed = 0;
  }

  close(): void {
    clearTimeout(this.#summary);
    this.#flush();
  }
}
