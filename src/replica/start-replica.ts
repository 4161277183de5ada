import { backoffMs, pause } from '../abort.js';
import { describeError, isKvs2Error, Kvs2Error } from '../errors.js';
import type { Log } from '../log/log.js';
import type { Logger } from '../logger.js';
import type { Replica } from './replica.js';

/** Pauses between attempts to open the log at start-up, as the replica's own retries. */
const START_RETRY_MIN_MS = 100;
const START_RETRY_MAX_MS = 10_000;

/**
 * Opens the log and starts the replica, waiting for the log as a running replica rides out an outage: one
 * started while brokers are down waits (a node listens, NOT_SERVING) and starts once they answer. Errors
 * retrying cannot fix go to `onFatal`. Shared by a node and the in-process replica library.
 */
export async function startReplica(
  log: Log,
  replica: Replica,
  logger: Logger,
  onFatal: (error: Kvs2Error) => void,
  signal: AbortSignal,
): Promise<void> {
  let identity: string | undefined;
  try {
    await untilLogAnswers(logger, signal, async () => {
      // After a failed start, reopen() adopts the log as it is now (a topic recreated meanwhile).
      const opened = identity === undefined ? await log.open(signal) : await log.reopen(signal);
      identity = opened;
      await replica.start(opened);
    });
  } catch (error) {
    if (signal.aborted) return;
    logger.fatal({ err: error }, `kvs2 cannot start: ${describeError(error)}`);
    onFatal(isKvs2Error(error) ? error : new Kvs2Error('INCONSISTENT_STATE', describeError(error)));
  }
}

/**
 * Runs `attempt` until it succeeds, pausing with backoff after each failure the log may get over
 * (LOG_UNAVAILABLE, LOG_RECREATED), with a warning; any other error is thrown. Returns null once the
 * signal aborts.
 */
export async function untilLogAnswers<T>(
  logger: Logger,
  signal: AbortSignal,
  attempt: () => Promise<T>,
): Promise<T | null> {
  for (let attempts = 0; !signal.aborted; attempts++) {
    try {
      return await attempt();
    } catch (error) {
      if (signal.aborted) return null;
      if (!isKvs2Error(error) || (error.code !== 'LOG_UNAVAILABLE' && error.code !== 'LOG_RECREATED')) throw error;
      const waitMs = backoffMs(attempts, START_RETRY_MIN_MS, START_RETRY_MAX_MS);
      logger.warn({ err: error, waitMs }, `waiting for the log, retrying in ${waitMs} ms: ${error.message}`);
      await pause(waitMs, signal);
    }
  }
  return null;
}
