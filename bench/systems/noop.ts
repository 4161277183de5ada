import { freePort, SERVER_CORE, spawnManaged, waitFor } from '../lib/processes.js';
import { treePath } from '../lib/tree.js';
import type { GrpcSystem } from './system.js';

/** Starts bench/noop-server.ts pinned to the server core. */
export async function startNoop(logFile: string, valueBytes: number): Promise<GrpcSystem> {
  const port = await freePort();
  const target = `127.0.0.1:${port}`;
  let listening = false;
  const proc = spawnManaged(
    'noop',
    process.execPath,
    [treePath('dist/bench/noop-server.js'), '--listen', target, '--value-bytes', String(valueBytes)],
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
    name: 'noop',
    target,
    durability: 'none (answers without doing anything)',
    serverPids: () => [proc.pid],
    stop: () => proc.stop(),
  };
}
