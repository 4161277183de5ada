import assert from 'node:assert/strict';
import type { ServerProcess } from './server-process.js';

/** The metrics listener's port, from the start-up log line that says where it listens. */
export async function metricsPortOf(server: ServerProcess): Promise<number> {
  const line = await server.waitForLine((l) => l.msg.startsWith('metrics and probes on http://127.0.0.1:'));
  assert.equal(line.msg, `metrics and probes on http://127.0.0.1:${line.metricsPort}/metrics, /livez, /readyz`);
  return line.metricsPort as number;
}
