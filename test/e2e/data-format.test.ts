import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { open } from 'lmdb';
import { LOG_FORMAT_FILE } from '../../src/log/embedded/log-format.js';
import { LmdbStore } from '../../src/store/lmdb-store.js';
import { STORE_FORMAT_KEY } from '../../src/store/store-format.js';
import { KVS2_VERSION } from '../../src/version.js';
import { rewriteAsFormatOne } from '../support/format-one-store.js';
import { SeedClient } from '../support/grpc-clients.js';
import { KVS2_BIN, tempDir } from '../support/paths.js';
import { type LogLine, ServerProcess } from '../support/server-process.js';

/** Runs `kvs2 serve` on a data dir until it exits by itself; its JSON log lines and exit code. */
async function serveUntilExit(dataDir: string): Promise<{ code: number | null; lines: LogLine[] }> {
  const child = spawn(process.execPath, [KVS2_BIN, 'serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  // A node that does not exit fails the test instead of hanging it.
  const guard = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const chunks: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(guard);
  const lines = Buffer.concat(chunks)
    .toString('utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as LogLine);
  return { code, lines };
}

async function setStoreFormat(storeDir: string, format: unknown): Promise<void> {
  const env = open({ path: storeDir, maxDbs: 4 });
  const meta = env.openDB<unknown, string>({ name: 'meta' });
  if (format === undefined) await meta.remove(STORE_FORMAT_KEY);
  else await meta.put(STORE_FORMAT_KEY, format);
  await env.close();
}

async function storeFormat(storeDir: string): Promise<unknown> {
  const env = open({ path: storeDir, maxDbs: 4 });
  const format = env.openDB<unknown, string>({ name: 'meta' }).get(STORE_FORMAT_KEY);
  await env.close();
  return format;
}

describe('a node and the format version of its data dir', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir('data-format');
  });
  after(async () => {
    await dir.remove();
  });

  test('a store in a newer format version: the node exits 1 with one fatal line naming it, never listening', async () => {
    const dataDir = `${dir.path}/newer-store`;
    await LmdbStore.open(join(dataDir, 'store')).close();
    await setStoreFormat(join(dataDir, 'store'), 3);

    const { code, lines } = await serveUntilExit(dataDir);
    assert.equal(code, 1, JSON.stringify(lines));
    const failures = lines.filter((line) => line.level === 'fatal' || line.level === 'error');
    assert.equal(failures.length, 1, JSON.stringify(lines));
    assert.match(
      String(failures[0]?.msg),
      /^kvs2 could not start: LMDB store in .*newer-store\/store is in format version 3, which this kvs2 \(.+\) cannot read: it reads store format version 1, 2\./,
    );
    assert.equal((failures[0]?.err as { code?: unknown } | undefined)?.code, 'DATA_FORMAT_UNSUPPORTED');
    assert.equal(
      lines.some((line) => line.msg.startsWith('kvs2 listening')),
      false,
    );
    assert.equal(await storeFormat(join(dataDir, 'store')), 3, 'the store is left as it was');
  });

  test('an embedded log in a newer format version: the node exits 1 with one fatal line naming it', async () => {
    const dataDir = `${dir.path}/newer-log`;
    mkdirSync(join(dataDir, 'log'), { recursive: true });
    writeFileSync(join(dataDir, 'log', LOG_FORMAT_FILE), '7\n');

    const { code, lines } = await serveUntilExit(dataDir);
    assert.equal(code, 1, JSON.stringify(lines));
    const failures = lines.filter((line) => line.level === 'fatal' || line.level === 'error');
    assert.equal(failures.length, 1, JSON.stringify(lines));
    assert.match(
      String(failures[0]?.msg),
      /^kvs2 cannot start: embedded log in .*newer-log\/log is in format version 7, which this kvs2 \(.+\) cannot read: it reads embedded log format version 1\./,
    );
    assert.equal((failures[0]?.err as { code?: unknown } | undefined)?.code, 'DATA_FORMAT_UNSUPPORTED');
    assert.equal(readFileSync(join(dataDir, 'log', LOG_FORMAT_FILE), 'utf8'), '7\n');
  });

  test('a data dir written before format versions serves its data: adopted as format 1, upgraded to 2', async () => {
    const dataDir = `${dir.path}/unversioned`;
    let server = await ServerProcess.start({ dataDir });
    let client = new SeedClient(server.address);
    await client.set(Buffer.from('kept'), Buffer.from('value'));
    client.close();
    assert.equal((await server.stop('SIGTERM')).code, 0);
    // As the kvs2 before versions left it: values without versions, no format entry in the store, no
    // format file in the log.
    await rewriteAsFormatOne(join(dataDir, 'store'), undefined);
    rmSync(join(dataDir, 'log', LOG_FORMAT_FILE));

    server = await ServerProcess.start({ dataDir });
    client = new SeedClient(server.address);
    try {
      await server.waitUntilCaughtUp();
      const reply = await client.get(Buffer.from('kept'));
      assert.deepEqual(reply.data, Buffer.from('value'));
    } finally {
      client.close();
      assert.equal((await server.stop('SIGTERM')).code, 0);
    }
    assert.equal(await storeFormat(join(dataDir, 'store')), 2);
    assert.equal(readFileSync(join(dataDir, 'log', LOG_FORMAT_FILE), 'utf8'), '1\n');
  });

  test('the line saying where the node listens carries the version of kvs2', async () => {
    const { version } = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    assert.equal(KVS2_VERSION, version);
    const server = await ServerProcess.start({ dataDir: `${dir.path}/version-line` });
    try {
      const listening = await server.waitForLine((line) => line.msg.startsWith('kvs2 listening'));
      assert.equal(listening.version, version);
      assert.match(
        listening.msg,
        new RegExp(`^kvs2 listening on 127\\.0\\.0\\.1:\\d+ \\(version ${version.replaceAll('.', '\\.')}\\), `),
      );
    } finally {
      assert.equal((await server.stop('SIGTERM')).code, 0);
    }
  });
});
