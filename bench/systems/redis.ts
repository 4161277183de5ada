import { mkdirSync } from 'node:fs';
import { freePort, run, SERVER_CORE, spawnManaged, waitFor } from '../lib/processes.js';
import type { RedisSystem } from './system.js';

export type RedisPersistence = 'none' | 'aof-always';

/** A Redis on loopback: no persistence at all, or an append-only file fsynced before every reply. */
export async function startRedis(
  dataDir: string,
  logFile: string,
  persistence: RedisPersistence,
): Promise<RedisSystem> {
  mkdirSync(dataDir, { recursive: true });
  const port = await freePort();
  const persistenceArgs =
    persistence === 'none'
      ? ['--appendonly', 'no']
      : ['--appendonly', 'yes', '--appendfsync', 'always', '--aof-use-rdb-preamble', 'yes'];
  const proc = spawnManaged(
    persistence === 'none' ? 'redis' : 'redis-aof',
    'redis-server',
    [
      '--bind',
      '127.0.0.1',
      '--port',
      String(port),
      '--dir',
      dataDir,
      '--save',
      '',
      '--daemonize',
      'no',
      '--protected-mode',
      'yes',
      ...persistenceArgs,
    ],
    { core: SERVER_CORE, logFile },
  );
  await waitFor(
    'redis to answer PING',
    async () => {
      if (!proc.running) throw new Error(`redis-server exited during start-up; see ${logFile}`);
      const ping = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), 'PING'], { timeoutMs: 2_000 });
      return ping.stdout.trim() === 'PONG';
    },
    30_000,
  );
  return {
    name: persistence === 'none' ? 'redis' : 'redis-aof',
    port,
    durability: persistence === 'none' ? 'none (no RDB, no AOF)' : 'AOF, appendfsync always',
    serverPids: () => [proc.pid],
    stop: () => proc.stop(),
  };
}

/** Fields of `INFO memory`, e.g. used_memory_rss. */
export async function redisInfoMemory(port: number): Promise<Record<string, string>> {
  const info = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), 'INFO', 'memory'], { timeoutMs: 5_000 });
  const fields: Record<string, string> = {};
  for (const line of info.stdout.split('\r\n').join('\n').split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) fields[line.slice(0, colon)] = line.slice(colon + 1).trim();
  }
  return fields;
}
