import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Kvs2Client } from '../../src/client/index.js';
import { type CliResult, runKvs2 } from '../support/cli-process.js';
import { tempDir } from '../support/paths.js';
import { ServerProcess } from '../support/server-process.js';

/** A failure's stderr: exactly one line, `kvs2 <command>: <code>: ...`. */
function failure(result: CliResult, command: string, exitCode: number, code: string): string {
  assert.equal(result.code, exitCode, `exit code; stderr: ${result.stderr}`);
  const lines = result.stderr.split('\n');
  assert.equal(lines.length, 2, `one line on stderr, got: ${JSON.stringify(result.stderr)}`);
  assert.ok(lines[0]?.startsWith(`kvs2 ${command}: ${code}: `), lines[0]);
  return lines[0] as string;
}

function ok(result: CliResult): string {
  assert.deepEqual([result.code, result.stderr], [0, ''], `stdout: ${result.stdout.toString()}`);
  return result.stdout.toString();
}

/** Every key and value the node serves, following scan pages. */
async function everything(client: Kvs2Client, after: Buffer): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  let continuation: Buffer = Buffer.alloc(0);
  do {
    const page = await client.scan({ continuation, after: [after], limit: 1000 });
    for (const { key, value } of page.items) found.set(key.toString(), value.toString());
    continuation = page.continuation;
  } while (continuation.length > 0);
  return found;
}

describe('kvs2 snapshot and compact against real nodes on the embedded log', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let source: string;
  let file: string;
  /** What the source node holds when it stops. */
  const expected = new Map<string, string>();
  /** The token of a write long before the snapshot. */
  let earlyToken: string;
  let lastToken: Buffer;

  before(async () => {
    dir = await tempDir('snapshot-e2e');
    source = join(dir.path, 'source');
    file = join(dir.path, 'backup.kvs2snap');
    const server = await ServerProcess.start({ dataDir: source });
    const client = new Kvs2Client(server.address);
    try {
      await server.waitUntilCaughtUp();
      const first = await client.set({ key: Buffer.from('first'), value: Buffer.from('written first') });
      expected.set('first', 'written first');
      earlyToken = first.token.toString('base64');
      for (let batch = 0; batch < 6; batch++) {
        const mutations = [];
        for (let i = 0; i < 500; i++) {
          const key = `user/${(batch * 500 + i) * 7}`;
          mutations.push({ key: Buffer.from(key), value: Buffer.from(`value ${batch}.${i}`), delete: false });
          expected.set(key, `value ${batch}.${i}`);
        }
        lastToken = (await client.write({ mutations })).token;
      }
      for (const key of ['user/0', 'user/7', 'user/14']) {
        lastToken = (await client.delete({ key: Buffer.from(key) })).token;
        expected.delete(key);
      }
      // The node must have applied everything before it stops; a graceful stop also drains.
      assert.equal((await everything(client, lastToken)).size, expected.size);

      // Offline commands refuse a data dir a node is running on.
      const running = await runKvs2(['snapshot', 'save', file, '--data-dir', source]);
      assert.match(failure(running, 'snapshot save', 4, 'DATA_DIR_IN_USE'), /stop it first/);
      assert.equal(existsSync(file), false);
      failure(await runKvs2(['compact', '--data-dir', source]), 'compact', 4, 'DATA_DIR_IN_USE');
    } finally {
      client.close();
      assert.equal((await server.stop()).code, 0);
    }
  });
  after(async () => {
    await dir.remove();
  });

  test('save, inspect, restore elsewhere: the new node serves every key, honours old tokens and takes writes', async () => {
    const saved = ok(await runKvs2(['snapshot', 'save', file, '--data-dir', source]));
    assert.match(saved, new RegExp(`keys +${expected.size}\\n`));
    const inspected = ok(await runKvs2(['snapshot', 'inspect', file]));
    assert.match(inspected, /log +embedded \(embedded:/);
    assert.match(inspected, new RegExp(`verified: ${expected.size} entries`));

    const target = join(dir.path, 'restored');
    const restored = ok(await runKvs2(['snapshot', 'restore', file, '--data-dir', target]));
    assert.match(restored, new RegExp(`^restored ${expected.size} keys into `));
    assert.match(restored, /its embedded log continues at offset \d+/);

    const server = await ServerProcess.start({ dataDir: target });
    const client = new Kvs2Client(server.address);
    try {
      await server.waitUntilCaughtUp();
      const early = await runKvs2(['get', 'first', '--after', earlyToken, '--endpoint', server.address]);
      assert.equal(ok(early), 'written first\n');
      assert.deepEqual(await everything(client, lastToken), expected);
      const later = ok(await runKvs2(['put', 'later', 'after the restore', '--endpoint', server.address])).trim();
      const read = await runKvs2(['get', 'later', '--after', later, '--endpoint', server.address]);
      assert.equal(ok(read), 'after the restore\n');
      // The later write continues the log: a token of it covers the old ones.
      const merged = await runKvs2([
        'get',
        'first',
        '--after',
        later,
        '--after',
        earlyToken,
        '--endpoint',
        server.address,
      ]);
      assert.equal(ok(merged), 'written first\n');
    } finally {
      client.close();
      assert.equal((await server.stop()).code, 0);
    }

    // A restore over the store it just made needs --force, and compaction keeps the data.
    const again = await runKvs2(['snapshot', 'restore', file, '--data-dir', target]);
    assert.match(failure(again, 'snapshot restore', 4, 'DATA_DIR_IN_USE'), /--force/);
    assert.match(
      ok(await runKvs2(['compact', '--data-dir', target])),
      new RegExp(`^compacted ${expected.size + 1} keys`),
    );
    const forced = ok(await runKvs2(['snapshot', 'restore', file, '--data-dir', target, '--force']));
    assert.match(forced, /replacing what it held/);
  });

  test('a truncated, a damaged and a newer-format file are refused and the target is left alone', async () => {
    ok(await runKvs2(['snapshot', 'save', file, '--data-dir', source]));
    const whole = readFileSync(file);
    const cases: Array<[string, Buffer, string]> = [];
    cases.push(['truncated', whole.subarray(0, Math.floor(whole.length * 0.6)), 'SNAPSHOT_INVALID']);
    const flipped = Buffer.from(whole);
    flipped[Math.floor(whole.length / 2)] = (flipped[Math.floor(whole.length / 2)] as number) ^ 1;
    cases.push(['flipped', flipped, 'SNAPSHOT_INVALID']);
    const newer = Buffer.from(whole);
    newer.writeUInt32BE(99, 8);
    cases.push(['newer', newer, 'DATA_FORMAT_UNSUPPORTED']);
    for (const [name, bytes, code] of cases) {
      const damaged = join(dir.path, `${name}.kvs2snap`);
      writeFileSync(damaged, bytes);
      const target = join(dir.path, `target-${name}`);
      failure(await runKvs2(['snapshot', 'restore', damaged, '--data-dir', target]), 'snapshot restore', 4, code);
      assert.equal(existsSync(target), false, `${name}: no data dir was made`);
      failure(await runKvs2(['snapshot', 'inspect', damaged]), 'snapshot inspect', 4, code);
    }
  });

  test('a restore cut between its renames leaves a node that refuses to start, never one missing data', async () => {
    // The state a crash after the store's rename and before the log's leaves: the new store, no log.
    const target = join(dir.path, 'half-restored');
    ok(await runKvs2(['snapshot', 'restore', file, '--data-dir', target]));
    rmSync(join(target, 'log'), { recursive: true });
    const server = await ServerProcess.start({ dataDir: target });
    const fatal = await server.waitForLine((line) => line.level === 'fatal');
    assert.match(String(fatal.msg), /cannot be used: the store was built from log embedded:/);
    assert.notEqual((await server.exited).code, 0);
    // Restoring again with --force mends it.
    ok(await runKvs2(['snapshot', 'restore', file, '--data-dir', target, '--force']));
    assert.equal(existsSync(join(target, 'log', 'identity')), true);
  });

  test('- is stdout for save and stdin for restore', async () => {
    const saved = await runKvs2(['snapshot', 'save', '-', '--data-dir', source]);
    assert.equal(saved.code, 0, saved.stderr);
    assert.match(saved.stderr, /saved a snapshot of .* to stdout/);
    assert.equal(saved.stdout.subarray(0, 8).toString('latin1'), 'KVS2SNAP');
    const target = join(dir.path, 'from-stdin');
    const restored = ok(await runKvs2(['snapshot', 'restore', '-', '--data-dir', target], { input: saved.stdout }));
    assert.match(restored, new RegExp(`^restored ${expected.size} keys`));
  });
});
