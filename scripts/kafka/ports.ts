import { randomInt } from 'node:crypto';
import { createServer } from 'node:net';
import { HOST } from './config-files.js';

/**
 * Ports are picked at random below the ephemeral ranges of Linux (32768+) and macOS (49152+), so that
 * outgoing connections cannot take one between our check and the JVM binding it; a race that still
 * happens shows as a bind failure, and the caller retries with other ports.
 */
const LOW = 20_000;
const HIGH = 32_767;

/** `count` distinct ports that could be bound on the loopback address just now. */
export async function pickFreePorts(count: number): Promise<number[]> {
  const picked = new Set<number>();
  for (let tries = 0; picked.size < count; tries++) {
    if (tries > 1000) throw new Error(`could not find ${count} free ports on ${HOST}`);
    const port = randomInt(LOW, HIGH + 1);
    if (!picked.has(port) && (await canBind(port))) picked.add(port);
  }
  return [...picked];
}

/** Whether a listener could bind `port` on the loopback address (what the broker binds). */
export function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: HOST, exclusive: true }, () => server.close(() => resolve(true)));
  });
}
