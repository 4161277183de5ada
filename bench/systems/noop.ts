import { servingNodeFlags } from '../../src/cli/runtime-settings.js';
import { freePort, SERVER_CORE, spawnManaged, waitFor } from '../lib/processes.js';
import { treePath } from '../lib/tree.js';
import type { GrpcSystem } from './system.js';

/** Which server answers: grpc-js (kvs2's stack, system `noop`) or node:http2 alone (system `http2`). */
export type NoopStack = 'grpc-js' | 'http2';

/**
 * Starts bench/noop-server.ts pinned to the server core, with the Node flags `kvs2 serve` gives itself on one
 * core (src/cli/runtime-settings.ts): the ceiling of kvs2's stack runs on the same runtime as kvs2.
 */
export async function startNoop(
  logFile: string,
  valueBytes: number,
  stack: NoopStack = 'grpc-js',
): Promise<GrpcSystem> {
  const name = stack === 'grpc-js' ? 'noop' : 'http2';
  const port = await freePort();
  const target = `127.0.0.1:${port}`;
  let listening = false;
  const proc = spawnManaged(
    name,
    process.execPath,
    [
      ...servingNodeFlags({ env: process.env, execArgv: [], cores: 1 }),
      treePath('dist/bench/noop-server.js'),
      '--listen',
      target,
      '--value-bytes',
      String(valueBytes),
      '--stack',
      stack,
    ],
    {
      core: SERVER_CORE,
      logFile,
      onLine: (line) => {
        if (line.startsWith('noop listening')) listening = true;
      },
    },
  );
  await waitFor(
    'the no-op server to listen',
    () => {
      if (!proc.running) throw new Error(`the no-op server exited; see ${logFile}`);
      return listening;
    },
    30_000,
  );
  return {
    name,
    target,
    durability:
      stack === 'grpc-js'
        ? 'none (answers without doing anything)'
        : 'none (answers without doing anything, on node:http2 without grpc-js)',
    serverPids: () => [proc.pid],
    stop: () => proc.stop(),
  };
}
