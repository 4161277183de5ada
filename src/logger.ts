import { pino } from 'pino';
import type { LogLevel } from './config/config.js';

export type Logger = pino.Logger;

/**
 * JSON lines on stdout, one per event. Written synchronously so that the last words before an exit
 * (or a crash) are never lost in a buffer.
 */
export function createLogger(level: LogLevel, destination: NodeJS.WritableStream | number = 1): Logger {
  return pino(
    {
      level,
      base: { name: 'kvs2' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    typeof destination === 'number' ? pino.destination({ dest: destination, sync: true }) : destination,
  );
}
