import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ServerCredentials, status } from '@grpc/grpc-js';
import { Kvs2Client, Kvs2ClientError, NodeState } from '../../src/client/index.js';
import { decodeSnapshot } from '../../src/snapshot/snapshot-decoder.js';
import { SnapshotEncoder } from '../../src/snapshot/snapshot-encoder.js';
import { verifySnapshot } from '../../src/snapshot/snapshot-install.js';
import { LmdbStore } from '../../src/store/lmdb-store.js';
import { collect, fillStore } from '../snapshot/snapshot-support.js';
import { type CliResult, runKvs2 } from '../support/cli-process.js';
import { eventually } from '../support/grpc-clients.js';
import { tempDir } from '../support/paths.js';
import { ServerProcess } from '../support/server-process.js';
import { StandInNode } from '../support/stand-in-node.js';

const b = (text: string): Buffer => Buffer.from(text);

function ok(result: CliResult): string {
  assert.deepEqual([result.code, result.stderr], [0, ''], `stdout: ${result.stdout.toString()}`);
  return result.stdout.toString();
}

/** A failure: this exit code and one line on stderr, `kvs2 snapshot save: <code>: ...`. */
function failure(result: CliResult, exitCode: number, code: string): string {
  assert.equal(result.code, exitCode, `exit code; stderr: ${result.stderr}`);
  const lines = result.stderr.split('\n');
  assert.equal(lines.length, 2, `one line on stderr, got: ${JSON.stringify(result.stderr)}`);
  assert.ok(lines[0]?.startsWith(`kvs2 snapshot save: ${code}: `), lines[0]);
  return lines[0] as string;
}

/** Every key and value the node serves, following scan pages. */
async function everything(client: Kvs2Client): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  let continuation: Buffer = Buffer.alloc(0);
  do {
    const page = await client.scan({ continuation, limit: 1000 });
    for (const { key, value } of page.items) found.set(key.toString(), value.toString());
    continuation = page.continuation;
  } while (continuation.length > 0);
  return found;
}

/** No temporary file of a save is left beside FILE. */
function noLeftovers(dir: string): void {
  assert.deepEqual(
    readdirSync(dir).filter((name) => name.includes('.tmp-')),
    [],
  );
}

describe('kvs2 snapshot save --endpoint: a running node on the embedded log, under writes', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let server: ServerProcess;
  let client: Kvs2Client;
  /** Written before the tests: 10 MiB, so that a snapshot outgrows the buffers between node and client. */
  const bulk = new Map<string, string>();
  let earlyToken: string;

  before(async () => {
    dir = await tempDir('snapshot-remote');
    server = await ServerProcess.start({ dataDir: join(dir.path, 'source') });
    client = new Kvs2Client(server.address);
    await server.waitUntilCaughtUp();
    earlyToken = (await client.set({ key: b('first'), value: b('written first') })).token.toString('base64');
    bulk.set('first', 'written first');
    for (let batch = 0; batch < 20; batch++) {
      const mutations = Array.from({ length: 500 }, (_, i) => {
        const key = `bulk/${String(batch * 500 + i).padStart(5, '0')}`;
        const value = `${key} `.repeat(100);
        bulk.set(key, value);
        return { key: b(key), value: b(value), delete: false };
      });
      await client.write({ mutations, waitForApply: true });
    }
  });
  after(async () => {
    client.close();
    assert.equal((await server.stop()).code, 0);
    await dir.remove();
  });

  test('saved while Sets go on, restored elsewhere: the new node serves every Set acknowledged before the save began', async () => {
    const file = join(dir.path, 'live.kvs2snap');
    const acknowledged = new Map<string, string>();
    let stop = false;
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        const key = `live/${String(i).padStart(6, '0')}`;
        await client.set({ key: b(key), value: b(`value ${i}`) });
        acknowledged.set(key, `value ${i}`);
      }
    })();
    let saved: CliResult;
    let before: Map<string, string>;
    let startedAt: number;
    try {
      await eventually(() => acknowledged.size >= 20, 20_000, 'the writer to be running');
      before = new Map(acknowledged);
      startedAt = Date.now();
      saved = await runKvs2(['snapshot', 'save', file, '--endpoint', server.address]);
    } finally {
      stop = true;
      await writer;
    }
    const report = ok(saved);
    assert.match(report, new RegExp(`^saved a snapshot of ${server.address} to ${file} \\(`));
    assert.match(report, /log +embedded \(embedded:/);
    assert.match(report, /verified: \d+ entries, sha256 [0-9a-f]{64}\n$/);
    noLeftovers(dir.path);
    const checked = await verifySnapshot(chunksOf(readFileSync(file)));
    assert.ok(checked.keys >= bulk.size + before.size, `${checked.keys} keys`);
    // A caught-up node's snapshot is dated by the save, not by the older catch-up time its store saved.
    const { caughtUpAt } = checked.metadata;
    assert.ok(caughtUpAt !== null && caughtUpAt >= startedAt, `caughtUpAt ${caughtUpAt}, save began ${startedAt}`);

    const target = join(dir.path, 'restored');
    ok(await runKvs2(['snapshot', 'restore', file, '--data-dir', target]));
    const restored = await ServerProcess.start({ dataDir: target });
    const reader = new Kvs2Client(restored.address);
    try {
      await restored.waitUntilCaughtUp();
      const found = await everything(reader);
      const missing = [...bulk, ...before].filter(([key, value]) => found.get(key) !== value).map(([key]) => key);
      assert.deepEqual(missing, []);
      // A token from before the snapshot is honoured: the restored log continues the same one.
      const early = await runKvs2(['get', 'first', '--after', earlyToken, '--endpoint', restored.address]);
      assert.equal(ok(early), 'written first\n');
    } finally {
      reader.close();
      assert.equal((await restored.stop()).code, 0);
    }
  });

  test('reads keep working on the node while a snapshot streams, and the snapshot is whole', async () => {
    let reads = 0;
    const paced = (async function* () {
      for await (const chunk of client.snapshot()) {
        yield chunk;
        if (reads > 0) continue;
        // The stream is open (its first chunk is here, the rest is not): the node answers reads meanwhile.
        for (const key of ['first', 'bulk/00000', 'bulk/09999']) {
          assert.equal((await client.get({ key: b(key) })).data.toString(), bulk.get(key));
          reads++;
        }
      }
    })();
    const checked = await verifySnapshot(paced);
    assert.equal(reads, 3);
    assert.ok(checked.keys >= bulk.size);
  });

  test('a client that cancels mid-stream leaves the node healthy, and the next snapshot is whole', async () => {
    const chunks = client.snapshot()[Symbol.asyncIterator]();
    assert.equal((await chunks.next()).done, false);
    await chunks.return?.();
    assert.equal((await client.status()).state, NodeState.NODE_STATE_SERVING);
    const written = await client.set({ key: b('after-cancel'), value: b('yes'), waitForApply: true });
    assert.ok(written.token.length > 0);
    const file = join(dir.path, 'after-cancel.kvs2snap');
    const report = ok(await runKvs2(['snapshot', 'save', file, '--endpoint', server.address]));
    assert.match(report, /verified: \d+ entries/);
    const content = new Map<string, string>();
    for await (const part of decodeSnapshot(chunksOf(readFileSync(file)))) {
      if (part.kind !== 'entries') continue;
      for (const entry of part.entries)
        content.set(Buffer.from(entry.key).toString(), Buffer.from(entry.value).toString());
    }
    assert.equal(content.get('after-cancel'), 'yes');
  });

  test('exactly one of --endpoint and --data-dir', async () => {
    const file = join(dir.path, 'never.kvs2snap');
    const both = await runKvs2(['snapshot', 'save', file, '--endpoint', server.address, '--data-dir', dir.path]);
    assert.equal(both.code, 2, both.stderr);
    assert.match(both.stderr, /^kvs2 snapshot save: give either --endpoint .* or --data-dir .*, not both\n$/);
    const neither = await runKvs2(['snapshot', 'save', file]);
    assert.equal(neither.code, 2, neither.stderr);
    const misplaced = await runKvs2(['snapshot', 'save', file, '--data-dir', dir.path, '--token', 'x']);
    assert.equal(misplaced.code, 2, misplaced.stderr);
    assert.match(misplaced.stderr, /--token goes with --endpoint/);
    assert.equal(existsSync(file), false);
  });
});

describe('kvs2 snapshot save --endpoint under --auth-file', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let server: ServerProcess;
  const TOKENS = { admin: 'admin-secret-1', reader: 'reader-secret-2' } as const;

  before(async () => {
    dir = await tempDir('snapshot-auth');
    const hash = async (token: string): Promise<string> =>
      ok(await runKvs2(['auth', 'hash-token'], { input: `${token}\n` })).trim();
    const authFile = join(dir.path, 'auth.json');
    await writeFile(
      authFile,
      JSON.stringify({
        tokens: { admin: await hash(TOKENS.admin), reader: await hash(TOKENS.reader) },
        permissions: {
          admin: [{ prefix: '', read: true, write: true, watch: true }],
          reader: [{ prefix: 'a/', read: true }],
        },
      }),
    );
    server = await ServerProcess.start({ dataDir: join(dir.path, 'data'), env: { KVS2_AUTH_FILE: authFile } });
    await server.waitUntilCaughtUp();
    const admin = new Kvs2Client(server.address, { token: TOKENS.admin });
    try {
      await admin.set({ key: b('a/1'), value: b('in a'), waitForApply: true });
      await admin.set({ key: b('b/1'), value: b('in b'), waitForApply: true });
    } finally {
      admin.close();
    }
  });
  after(async () => {
    assert.equal((await server.stop()).code, 0);
    await dir.remove();
  });

  test('a token with read on a/ only is PERMISSION_DENIED (exit 4, no file); no token is UNAUTHENTICATED; an admin token saves', async () => {
    const file = join(dir.path, 'auth.kvs2snap');
    const reader = await runKvs2(['snapshot', 'save', file, '--endpoint', server.address], {
      env: { KVS2_CLIENT_TOKEN: TOKENS.reader },
    });
    failure(reader, 4, 'PERMISSION_DENIED');
    assert.equal(existsSync(file), false);
    failure(await runKvs2(['snapshot', 'save', file, '--endpoint', server.address]), 4, 'UNAUTHENTICATED');
    assert.equal(existsSync(file), false);
    noLeftovers(dir.path);

    const report = ok(await runKvs2(['snapshot', 'save', file, '--endpoint', server.address, '--token', TOKENS.admin]));
    assert.match(report, /keys +2\n/);
  });
});

describe('kvs2 snapshot save --endpoint from a peer that cuts the stream', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let node: StandInNode;
  let whole: Buffer;

  before(async () => {
    dir = await tempDir('snapshot-cut');
    const entries = Array.from({ length: 3000 }, (_, i): readonly [Buffer, Buffer] => [
      b(`key/${String(i).padStart(5, '0')}`),
      Buffer.alloc(200, i % 256),
    ]);
    await fillStore(join(dir.path, 'store'), entries, new Map([[0, 3000]]), 'embedded:cut-test');
    const store = LmdbStore.open(join(dir.path, 'store'));
    try {
      whole = await collect(new SnapshotEncoder(store.snapshot()));
    } finally {
      await store.close();
    }
    node = await StandInNode.start(ServerCredentials.createInsecure());
  });
  after(async () => {
    await node.close();
    await dir.remove();
  });

  /** The snapshot's first `bytes` bytes, in chunks of 64 KiB. */
  const pieces = (bytes: number): Buffer[] => {
    const out: Buffer[] = [];
    for (let at = 0; at < bytes; at += 64 * 1024) out.push(whole.subarray(at, Math.min(bytes, at + 64 * 1024)));
    return out;
  };

  test('the whole stream: FILE holds exactly the snapshot', async () => {
    const file = join(dir.path, 'whole.kvs2snap');
    node.snapshotScript = { chunks: pieces(whole.length) };
    const report = ok(await runKvs2(['snapshot', 'save', file, '--endpoint', node.address]));
    assert.match(report, /keys +3000\n/);
    assert.deepEqual(readFileSync(file), whole);
  });

  test('cut mid-way with UNAVAILABLE: exit 3, and FILE is left as it was', async () => {
    const file = join(dir.path, 'cut.kvs2snap');
    writeFileSync(file, 'an older backup');
    node.snapshotScript = {
      chunks: pieces(Math.floor(whole.length / 2)),
      failure: { code: status.UNAVAILABLE, kvs2Code: 'SHUTTING_DOWN' },
    };
    failure(await runKvs2(['snapshot', 'save', file, '--endpoint', node.address]), 3, 'SHUTTING_DOWN');
    assert.equal(readFileSync(file, 'utf8'), 'an older backup');
    const fresh = join(dir.path, 'cut-fresh.kvs2snap');
    failure(await runKvs2(['snapshot', 'save', fresh, '--endpoint', node.address]), 3, 'SHUTTING_DOWN');
    assert.equal(existsSync(fresh), false);
    noLeftovers(dir.path);
  });

  test('cut mid-way but ended as if whole: the missing trailer is found, exit 4, no FILE', async () => {
    const file = join(dir.path, 'short.kvs2snap');
    node.snapshotScript = { chunks: pieces(whole.length - 100) };
    failure(await runKvs2(['snapshot', 'save', file, '--endpoint', node.address]), 4, 'SNAPSHOT_INVALID');
    assert.equal(existsSync(file), false);
    noLeftovers(dir.path);
  });

  test('a node that cannot be reached: exit 3', async () => {
    const file = join(dir.path, 'unreachable.kvs2snap');
    const closed = await StandInNode.start(ServerCredentials.createInsecure());
    const address = closed.address;
    await closed.close();
    const result = await runKvs2(['snapshot', 'save', file, '--endpoint', address]);
    assert.equal(result.code, 3, result.stderr);
    assert.equal(existsSync(file), false);
  });

  test('the client never retries a snapshot cut mid-way', async () => {
    node.snapshotScript = {
      chunks: pieces(1000),
      failure: { code: status.UNAVAILABLE, kvs2Code: 'LOG_UNAVAILABLE' },
    };
    const client = new Kvs2Client(node.address);
    const before = node.callsOf('snapshot');
    try {
      await assert.rejects(verifySnapshot(client.snapshot()), (error: unknown) => {
        assert.ok(error instanceof Kvs2ClientError);
        assert.equal(error.kvs2Code, 'LOG_UNAVAILABLE');
        return true;
      });
    } finally {
      client.close();
    }
    assert.equal(node.callsOf('snapshot') - before, 1);
  });
});

async function* chunksOf(bytes: Buffer): AsyncGenerator<Buffer> {
  for (let at = 0; at < bytes.length; at += 1024 * 1024) yield bytes.subarray(at, at + 1024 * 1024);
}
