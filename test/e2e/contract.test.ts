import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { eventually, HealthClient, SeedClient } from '../support/grpc-clients.js';
import { tempDir } from '../support/paths.js';
import { ServerProcess } from '../support/server-process.js';

/** The seed's contract, through a client built from the seed's own proto, against a real kvs2 process. */
describe('kvs2.Kvs2 contract on the embedded log', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let server: ServerProcess;
  let client: SeedClient;

  before(async () => {
    dir = await tempDir('contract');
    server = await ServerProcess.start({
      dataDir: dir.path,
      args: ['--max-key-bytes', '1024', '--max-value-bytes', String(1024 * 1024), '--max-batch-keys', '500'],
    });
    await server.waitUntilCaughtUp();
    client = new SeedClient(server.address);
  });

  after(async () => {
    client.close();
    const exit = await server.stop();
    assert.equal(exit.code, 0);
    await dir.remove();
  });

  test('Set answers PUBLISHED and Get returns the value', async () => {
    const reply = await client.set(Buffer.from('greeting'), Buffer.from('hello'));
    assert.equal(reply.status, 'PUBLISHED');
    await eventually(async () => (await client.get(Buffer.from('greeting'))).status === 'OK', 5000, 'the write');
    const got = await client.get(Buffer.from('greeting'));
    assert.deepEqual(got, { status: 'OK', data: Buffer.from('hello') });
  });

  test('Get of a missing key answers NOT_FOUND with empty data', async () => {
    assert.deepEqual(await client.get(Buffer.from('never-written')), { status: 'NOT_FOUND', data: Buffer.alloc(0) });
  });

  test('an empty value is a value, not a miss', async () => {
    await client.set(Buffer.from('empty'), Buffer.alloc(0));
    await eventually(async () => (await client.get(Buffer.from('empty'))).status === 'OK', 5000, 'the empty value');
    assert.deepEqual(await client.get(Buffer.from('empty')), { status: 'OK', data: Buffer.alloc(0) });
  });

  test('keys and values are arbitrary bytes: zero bytes and invalid UTF-8 round-trip exactly', async () => {
    const key = Buffer.from([0x00, 0xff, 0xfe, 0x00, 0xc3, 0x28, 0x80]);
    const value = Buffer.concat([Buffer.from([0x00, 0x00, 0xff, 0xc0, 0xaf]), randomBytes(1000)]);
    await client.set(key, value);
    await eventually(async () => (await client.get(key)).status === 'OK', 5000, 'the binary write');
    assert.deepEqual((await client.get(key)).data, value);
    // A key that differs only after a zero byte is a different key.
    assert.equal((await client.get(Buffer.from([0x00, 0xff, 0xfe, 0x00]))).status, 'NOT_FOUND');
  });

  test('200 KiB values are stored and served whole', async () => {
    const value = randomBytes(200 * 1024);
    await client.set(Buffer.from('big'), value);
    await eventually(async () => (await client.get(Buffer.from('big'))).status === 'OK', 5000, 'the big write');
    assert.ok((await client.get(Buffer.from('big'))).data.equals(value));
  });

  test('a later Set replaces the value', async () => {
    await client.set(Buffer.from('counter'), Buffer.from('1'));
    await client.set(Buffer.from('counter'), Buffer.from('2'));
    await eventually(
      async () => (await client.get(Buffer.from('counter'))).data.toString() === '2',
      5000,
      'the second write',
    );
  });

  test('MultiGet answers one part per key, in request order, keys echoed, duplicates included', async () => {
    await client.set(Buffer.from('m1'), Buffer.from('one'));
    await client.set(Buffer.from('m2'), Buffer.from('two'));
    await eventually(async () => (await client.get(Buffer.from('m2'))).status === 'OK', 5000, 'the writes');
    const keys = ['m2', 'missing', 'm1', 'm2'].map((k) => Buffer.from(k));
    const reply = await client.multiGet(keys);
    assert.deepEqual(reply.parts, [
      { key: Buffer.from('m2'), status: 'OK', data: Buffer.from('two') },
      { key: Buffer.from('missing'), status: 'NOT_FOUND', data: Buffer.alloc(0) },
      { key: Buffer.from('m1'), status: 'OK', data: Buffer.from('one') },
      { key: Buffer.from('m2'), status: 'OK', data: Buffer.from('two') },
    ]);
  });

  test('MultiGet of zero keys answers zero parts', async () => {
    assert.deepEqual((await client.multiGet([])).parts, []);
  });

  test('500 concurrent Sets are all acknowledged and all readable', async () => {
    const keys = Array.from({ length: 500 }, (_, i) => Buffer.from(`concurrent-${i}`));
    const replies = await Promise.all(keys.map((key, i) => client.set(key, Buffer.from(`value-${i}`))));
    assert.ok(replies.every((r) => r.status === 'PUBLISHED'));
    // Acknowledged means durable in the log; the replica makes it readable moments later.
    await eventually(
      async () => (await client.multiGet(keys)).parts.every((part) => part.status === 'OK'),
      10_000,
      'all 500 writes to be readable',
    );
    const all = await Promise.all(keys.map((key) => client.get(key)));
    for (const [i, reply] of all.entries()) assert.deepEqual(reply, { status: 'OK', data: Buffer.from(`value-${i}`) });
  });

  describe('bad input gets INVALID_ARGUMENT and the server keeps serving', () => {
    const expectInvalid = async (call: Promise<unknown>, message: RegExp): Promise<void> => {
      await assert.rejects(call, (error: { code: number; details: string }) => {
        assert.equal(error.code, status.INVALID_ARGUMENT);
        assert.match(error.details, message);
        return true;
      });
    };

    test('empty key on Get, Set and inside MultiGet', async () => {
      await expectInvalid(client.get(Buffer.alloc(0)), /key is empty/);
      await expectInvalid(client.set(Buffer.alloc(0), Buffer.from('v')), /key is empty/);
      await expectInvalid(client.multiGet([Buffer.from('a'), Buffer.alloc(0)]), /keys\[1\] is empty/);
    });

    test('key over the limit', async () => {
      const key = Buffer.alloc(1025, 'k');
      await expectInvalid(client.get(key), /1025 bytes; at most 1024/);
      await expectInvalid(client.set(key, Buffer.from('v')), /1025 bytes; at most 1024/);
      await expectInvalid(client.multiGet([key]), /keys\[0\] is 1025 bytes/);
      // Exactly at the limit is fine.
      assert.equal((await client.set(Buffer.alloc(1024, 'k'), Buffer.from('v'))).status, 'PUBLISHED');
    });

    test('value over the limit', async () => {
      await expectInvalid(
        client.set(Buffer.from('too-big'), Buffer.alloc(1024 * 1024 + 1)),
        /value is 1048577 bytes; at most 1048576/,
      );
      assert.equal((await client.get(Buffer.from('too-big'))).status, 'NOT_FOUND');
      assert.equal((await client.set(Buffer.from('just-fits'), Buffer.alloc(1024 * 1024))).status, 'PUBLISHED');
    });

    test('MultiGet over the key-count limit', async () => {
      const keys = Array.from({ length: 501 }, (_, i) => Buffer.from(`k${i}`));
      await expectInvalid(client.multiGet(keys), /501 keys; at most 500/);
      assert.equal((await client.multiGet(keys.slice(0, 500))).parts.length, 500);
    });

    test('the server still serves after all of it', async () => {
      assert.equal((await client.get(Buffer.from('greeting'))).status, 'OK');
      assert.equal(server.child.exitCode, null);
    });
  });

  test('health answers SERVING for "" and "kvs2.Kvs2" once caught up, and NOT_FOUND for other services', async () => {
    const health = new HealthClient(server.address);
    try {
      assert.equal(await health.check(''), 'SERVING');
      assert.equal(await health.check('kvs2.Kvs2'), 'SERVING');
      await assert.rejects(health.check('no.such.Service'), (e: { code: number }) => e.code === status.NOT_FOUND);
      const watch = health.watch('kvs2.Kvs2');
      await eventually(() => watch.statuses.length > 0, 5000, 'the first Watch message');
      assert.deepEqual(watch.statuses, ['SERVING']);
      watch.cancel();
    } finally {
      health.close();
    }
  });
});
