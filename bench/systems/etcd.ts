import { mkdirSync } from 'node:fs';
import { freePort, SERVER_CORE, spawnManaged, waitFor } from '../lib/processes.js';
import { isServing } from './grpc-health.js';
import type { GrpcSystem } from './system.js';

/**
 * A one-member etcd on loopback with a fresh data dir and its defaults (fsync of the WAL and the
 * backend on every commit), except a larger backend quota so the 1 KiB data set fits.
 */
export async function startEtcd(dataDir: string, logFile: string): Promise<GrpcSystem> {
  mkdirSync(dataDir, { recursive: true });
  const clientPort = await freePort();
  const peerPort = await freePort();
  const client = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const proc = spawnManaged(
    'etcd',
    'etcd',
    [
      '--name',
      'bench',
      '--data-dir',
      dataDir,
      '--listen-client-urls',
      client,
      '--advertise-client-urls',
      client,
      '--listen-peer-urls',
      peer,
      '--initial-advertise-peer-urls',
      peer,
      '--initial-cluster',
      `bench=${peer}`,
      '--quota-backend-bytes',
      String(8 * 1024 ** 3),
      '--log-level',
      'warn',
      '--logger',
      'zap',
    ],
    { core: SERVER_CORE, logFile },
  );
  const target = `127.0.0.1:${clientPort}`;
  await waitFor(
    'etcd to serve',
    async () => {
      if (!proc.running) throw new Error(`etcd exited during start-up; see ${logFile}`);
      return isServing(target);
    },
    60_000,
    100,
  );
  return {
    name: 'etcd',
    target,
    durability: 'fsync (WAL and backend) per commit, 1 member',
    serverPids: () => [proc.pid],
    stop: () => proc.stop(),
  };
}
