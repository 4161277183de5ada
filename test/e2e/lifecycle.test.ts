import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { eventually, HealthClient, SeedClient } from '../support/grpc-clients.js';
import { KVS2_BIN, tempDir } from '../support/paths.js';
import { type LogLine, ServerProcess } from '../support/server-process.js';

const keyOf = (i: number): Buffer => Buffer.from(`key-${i}`);
const valueFor = (i: number): Buffer => Buffer.from(`value-${i}-${'x'.repeat(i % 50)}`);

async function assertAllReadable(client: SeedClient, count: number): Promise<void> {
  const keys = Array.from({ length: count }, (_, i) => keyOf(i));
  for (let start = 0; start < count; start += 1000) {
    const reply = await client.multiGet(keys.slice(start, start + 1000));
    reply.parts.forEach((part, j) => {
      assert.equal(part.status, 'OK', `key-${start + j} is missing`);
      assert.deepEqual(part.data, valueFor(start + j));
    });
  }
}

/** What the replica said when it started: where it resumed and where the log ended. */
function replicaStart(server: ServerProcess): Promise<LogLine> {
  return server.waitForLine((line) => line.msg === 'replica starting');
}

describe('a node on the embedded log across restarts and shutdowns', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;

  before(async () => {
    dir = await tempDir('lifecycle');
  });
  after(async () => {
    await dir.remove();
  });

  test('the first log line says where it listens, which log it uses and where its data lives', async () => {
    const server = await ServerProcess.start({ dataDir: `${dir.path}/first-line` });
    try {
      const first = server.lines[0];
      assert.ok(first);
      assert.equal(first.level, 'info');
      assert.match(first.msg, /^kvs2 listening on 127\.0\.0\.1:\d+/);
      assert.equal(first.address, `127.0.0.1:${server.port}`);
      assert.match(String(first.log), /^embedded log in .*first-line\/log$/);
      assert.equal(first.dataDir, `${dir.path}/first-line`);
    } finally {
      assert.equal((await server.stop('SIGINT')).code, 0);
    }
  });

  test('data survives a graceful restart, which resumes from the stored offsets', async () => {
    const dataDir = `${dir.path}/graceful`;
    let server = await ServerProcess.start({ dataDir });
    let client = new SeedClient(server.address);
    await Promise.all(Array.from({ length: 300 }, (_, i) => client.set(keyOf(i), valueFor(i))));
    await client.set(keyOf(0), valueFor(0));
    client.close();
    assert.equal((await server.stop('SIGTERM')).code, 0);

    server = await ServerProcess.start({ dataDir });
    try {
      const start = await replicaStart(server);
      // Everything was applied before the stop: nothing is replayed.
      assert.deepEqual(start.appliedOffsets, start.endOffsets);
      assert.deepEqual(start.appliedOffsets, { '0': 301 });
      client = new SeedClient(server.address);
      await assertAllReadable(client, 300);
      client.close();
    } finally {
      assert.equal((await server.stop('SIGTERM')).code, 0);
    }
  });

  test('a start removes the staging folder an install or a rewrite cut short by a crash left, and keeps the data', async () => {
    const dataDir = `${dir.path}/staging-left`;
    let server = await ServerProcess.start({ dataDir });
    const client = new SeedClient(server.address);
    await client.set(keyOf(0), valueFor(0));
    client.close();
    assert.equal((await server.stop('SIGTERM')).code, 0);
    // What a process killed while it built a store leaves: a staging folder with a partial store in it.
    const leftover = join(dataDir, '.snapshot-staging-Xy12Ab', 'store');
    mkdirSync(leftover, { recursive: true });
    writeFileSync(join(leftover, 'data.mdb'), randomBytes(64 * 1024));
    server = await ServerProcess.start({ dataDir });
    try {
      const removed = server.lines.find((line) => line.msg.startsWith('removed what an install or rewrite'));
      assert.deepEqual(removed?.removed, ['.snapshot-staging-Xy12Ab']);
      assert.deepEqual(
        readdirSync(dataDir).filter((name) => name.startsWith('.snapshot-')),
        [],
      );
      const reader = new SeedClient(server.address);
      await assertAllReadable(reader, 1);
      reader.close();
    } finally {
      assert.equal((await server.stop('SIGTERM')).code, 0);
    }
  });

  test('acknowledged writes survive kill -9 right after the acknowledgement', async () => {
    const dataDir = `${dir.path}/kill9`;
    let server = await ServerProcess.start({ dataDir });
    let client = new SeedClient(server.address);
    const count = 2000;
    const replies = await Promise.all(Array.from({ length: count }, (_, i) => client.set(keyOf(i), valueFor(i))));
    assert.equal(replies.length, count);
    // No grace at all: the process dies the moment the last acknowledgement arrived.
    await server.kill9();
    client.close();

    server = await ServerProcess.start({ dataDir });
    try {
      await server.waitUntilCaughtUp();
      const start = await replicaStart(server);
      assert.deepEqual(start.endOffsets, { '0': count });
      client = new SeedClient(server.address);
      await assertAllReadable(client, count);
      client.close();
    } finally {
      await server.stop();
    }
  });

  test('shutdown with calls in flight: every call settles, acknowledged writes persist, exit 0', async () => {
    const dataDir = `${dir.path}/in-flight`;
    let server = await ServerProcess.start({ dataDir, args: ['--shutdown-timeout-ms', '4000'] });
    await server.waitUntilCaughtUp();
    let client = new SeedClient(server.address);
    const health = new HealthClient(server.address);
    const watch = health.watch('kvs2.Kvs2');
    await eventually(() => watch.statuses.includes('SERVING'), 5000, 'SERVING on Watch');

    const value = randomBytes(16 * 1024);
    const count = 3000;
    let settledCount = 0;
    const firstAck = Promise.withResolvers<void>();
    const outcomes = Array.from({ length: count }, (_, i) =>
      client.set(keyOf(i), value).then(
        () => {
          settledCount++;
          firstAck.resolve();
          return 'published' as const;
        },
        (error: { code: number }) => {
          settledCount++;
          return error.code;
        },
      ),
    );
    // Signal as soon as the first write is acknowledged, while the others are still in flight.
    await firstAck.promise;
    const inFlightAtSignal = count - settledCount;
    assert.ok(inFlightAtSignal > 0);
    const stopping = Date.now();
    const exit = await server.stop('SIGTERM');
    const shutdownMs = Date.now() - stopping;
    assert.equal(exit.code, 0);
    const settled = await Promise.all(outcomes);
    const published = settled.flatMap((outcome, i) => (outcome === 'published' ? [i] : []));
    const failed = settled.filter((outcome) => outcome !== 'published');
    assert.ok(published.length > 0, 'some writes were acknowledged before the signal');
    for (const code of failed) {
      assert.ok([status.UNAVAILABLE, status.CANCELLED].includes(code), `unexpected status ${String(code)}`);
    }
    // The watcher heard NOT_SERVING and its stream was ended, so shutdown did not wait for it.
    assert.equal(await watch.ended, 'end');
    assert.equal(watch.statuses.at(-1), 'NOT_SERVING');
    assert.ok(shutdownMs < 4000, `shutdown took ${shutdownMs} ms, as if it waited for the open Watch`);
    health.close();
    client.close();

    server = await ServerProcess.start({ dataDir });
    try {
      await server.waitUntilCaughtUp();
      client = new SeedClient(server.address);
      for (const i of published) {
        const reply = await client.get(keyOf(i));
        assert.equal(reply.status, 'OK', `acknowledged key-${i} was lost`);
        assert.ok(reply.data.equals(value));
      }
      client.close();
    } finally {
      await server.stop();
    }
  });

  test('health is NOT_SERVING until the replica caught up with the log written before the start', async () => {
    const dataDir = `${dir.path}/catch-up`;
    let server = await ServerProcess.start({ dataDir });
    const client = new SeedClient(server.address);
    await Promise.all(Array.from({ length: 500 }, (_, i) => client.set(keyOf(i), valueFor(i))));
    client.close();
    await server.kill9();

    server = await ServerProcess.start({ dataDir });
    try {
      await server.waitUntilCaughtUp();
      const start = await replicaStart(server);
      const health = new HealthClient(server.address);
      assert.equal(await health.check(''), 'SERVING');
      health.close();
      // The health flip is tied to the catch-up: the replica logged it caught up at the target it saw.
      const caughtUp = await server.waitUntilCaughtUp();
      assert.deepEqual(caughtUp.appliedOffsets, start.endOffsets);
    } finally {
      await server.stop();
    }
  });
});

describe('kvs2 serve on bad configuration', () => {
  const run = (args: string[], env: Record<string, string> = {}) =>
    spawnSync(process.execPath, [KVS2_BIN, 'serve', ...args], {
      env: { ...process.env, ...env },
      encoding: 'utf8',
      timeout: 20_000,
    });

  const cases: Array<{ name: string; args: string[]; env?: Record<string, string>; message: RegExp }> = [
    { name: 'a key limit over what LMDB allows', args: ['--max-key-bytes', '5000'], message: /--max-key-bytes/ },
    { name: 'a non-numeric value limit', args: ['--max-value-bytes', 'lots'], message: /--max-value-bytes/ },
    { name: 'a bad listen address', args: ['--listen', 'nowhere'], message: /--listen/ },
    { name: 'a bad log level', args: ['--log-level', 'loud'], message: /--log-level/ },
    { name: 'a bad Kafka broker list', args: ['--kafka-brokers', 'a b'], message: /--kafka-brokers/ },
    {
      name: 'a bad value in an environment variable',
      args: [],
      env: { KVS2_MAX_BATCH_KEYS: '-1' },
      message: /--max-batch-keys/,
    },
    { name: 'an unknown flag', args: ['--no-such-flag'], message: /unknown option '--no-such-flag'/ },
  ];
  for (const { name, args, env, message } of cases) {
    test(`${name}: one clear line naming the setting, exit 2, no stack trace`, () => {
      const result = run(args, env);
      assert.equal(result.status, 2, result.stderr);
      assert.match(result.stderr, message);
      assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
      assert.equal(result.stdout, '');
    });
  }

  test('--help documents every setting with its environment variable', () => {
    const result = run(['--help']);
    assert.equal(result.status, 0);
    for (const flag of [
      '--listen',
      '--data-dir',
      '--kafka-brokers',
      '--topic',
      '--max-key-bytes',
      '--max-value-bytes',
      '--max-batch-keys',
      '--log-level',
    ]) {
      assert.match(result.stdout, new RegExp(`${flag} <`));
      assert.match(result.stdout, new RegExp(`KVS2_${flag.slice(2).toUpperCase().replaceAll('-', '_')}`));
    }
  });
});
