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
  loadFromPeer: ((logIdentity: string, signal: AbortSignal) => Promise<void>) | null,
): Promise<void> {
  let identity: string | undefined;
  for (let attempt = 0; !signal.aborted; attempt++) {
    try {
      // After a failed start, reopen() adopts the log as it is now (a topic recreated meanwhile).
      identity = identity === undefined ? await log.open(signal) : await log.reopen(signal);
      await loadFromPeer?.(identity, signal);
      await replica.start(identity);
      return;
    } catch (error) {
      if (signal.aborted) return;
      if (!isKvs2Error(error) || (error.code !== 'LOG_UNAVAILABLE' && error.code !== 'LOG_RECREATED')) {
        logger.fatal({ err: error }, `kvs2 cannot start: ${describeError(error)}`);
        onFatal(isKvs2Error(error) ? error : new Kvs2Error('INCONSISTENT_STATE', describeError(error)));
        return;
      }
      const waitMs = backoffMs(attempt, START_RETRY_MIN_MS, START_RETRY_MAX_MS);
      logger.warn({ err: error, waitMs }, `waiting for the log, retrying in ${waitMs} ms: ${error.message}`);
      await pause(waitMs, signal);
    }
  }
}
