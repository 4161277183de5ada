import { abortError } from './errors.js';

/**
 * Settles with `work` or, if the signal aborts first, rejects with the abort's error (DEADLINE_EXCEEDED,
 * CANCELLED, ...). For calls that take no AbortSignal: the work itself goes on and its outcome is
 * dropped; a write that timed out may still land, as with any database.
 */
export function raceAbort<T>(work: Promise<T>, signal: AbortSignal | undefined, what: string): Promise<T> {
  if (signal === undefined) return work;
  if (signal.aborted) {
    work.catch(() => {});
    return Promise.reject(abortError(signal, what));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      work.catch(() => {});
      reject(abortError(signal, what));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
/** Waits `ms`, or less if the signal aborts; never rejects (callers check the signal themselves). */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/** Exponential backoff: 2× per attempt from `minMs`, capped at `maxMs`, with ±20% jitter so nodes spread out. */
export function backoffMs(attempt: number, minMs: number, maxMs: number): number {
  const base = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 20));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}
