import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { ConditionKind, Kvs2Client, SetStatus } from '../../src/client/kvs2-client.js';
import type { Condition } from '../../src/gen/kvs2.js';
import { type CliResult, runKvs2 } from '../support/cli-process.js';
import { tempDir } from '../support/paths.js';
import { ServerProcess } from '../support/server-process.js';

const b = (text: string): Buffer => Buffer.from(text);
const ifVersion = (version: number): Condition => ({ kind: ConditionKind.CONDITION_VERSION, version });
const IF_ABSENT: Condition = { kind: ConditionKind.CONDITION_ABSENT, version: 0 };
const IF_PRESENT: Condition = { kind: ConditionKind.CONDITION_PRESENT, version: 0 };
const codeOf = (error: unknown): number => (error as { code: number }).code;

/** Compare-and-set through a real node on the embedded log, over the gRPC wire and the CLI. */
describe('conditional writes on a node (embedded log)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let server: ServerProcess;
  let client: Kvs2Client;
  let kvs2: (args: readonly string[]) => Promise<CliResult>;

  before(async () => {
    dir = await tempDir('conditional');
    server = await ServerProcess.start({ dataDir: dir.path });
    await server.waitUntilCaughtUp();
    client = new Kvs2Client(server.address);
    kvs2 = (args) => runKvs2(args, { env: { KVS2_ENDPOINT: server.address } });
  });
  after(async () => {
    client.close();
    assert.equal((await server.stop()).code, 0);
    await dir.remove();
  });

  test('an unconditional Set answers PUBLISHED with the version it gave the key, as Get reports it', async () => {
    const reply = await client.set({ key: b('plain'), value: b('v'), waitForApply: true });
    assert.equal(reply.status, SetStatus.PUBLISHED);
    assert.ok(reply.version >= 1);
    assert.equal((await client.get({ key: b('plain') })).version, reply.version);
    const deleted = await client.delete({ key: b('plain'), waitForApply: true });
    assert.deepEqual([deleted.status, deleted.version], [SetStatus.PUBLISHED, 0]);
    // Deleted is absent: an update-if-present conflicts with version 0.
    const update = await client.set({ key: b('plain'), value: b('w'), condition: IF_PRESENT });
    assert.deepEqual([update.status, update.version], [SetStatus.CONFLICT, 0]);
  });

  test('create-if-absent races: exactly one of many concurrent creators wins', async () => {
    const replies = await Promise.all(
      Array.from({ length: 16 }, (_, i) =>
        client.set({ key: b('leader'), value: b(`candidate-${i}`), condition: IF_ABSENT }),
      ),
    );
    const winners = replies.flatMap((reply, i) => (reply.status === SetStatus.APPLIED ? [i] : []));
    assert.equal(winners.length, 1);
    const winner = replies[winners[0] as number];
    for (const reply of replies) {
      if (reply.status !== SetStatus.APPLIED)
        assert.deepEqual([reply.status, reply.version], [SetStatus.CONFLICT, winner?.version]);
    }
    const read = await client.get({ key: b('leader'), after: [winner?.token as Buffer], consistency: 1 });
    assert.deepEqual([read.data.toString(), read.version], [`candidate-${winners[0]}`, winner?.version]);
  });

  test('a lost-update-free counter: concurrent increments from several clients end at exactly their number', async () => {
    const clients = Array.from({ length: 4 }, () => new Kvs2Client(server.address, { ownConnection: true }));
    try {
      await client.set({ key: b('counter'), value: b('0'), condition: IF_ABSENT, waitForApply: true });
      const increment = async (c: Kvs2Client): Promise<number> => {
        for (let attempt = 1; ; attempt++) {
          const current = await c.get({ key: b('counter'), consistency: 2 });
          const next = String(Number(current.data.toString()) + 1);
          const reply = await c.set({ key: b('counter'), value: b(next), condition: ifVersion(current.version) });
          if (reply.status === SetStatus.APPLIED) return attempt;
          assert.equal(reply.status, SetStatus.CONFLICT);
        }
      };
      const perClient = 10;
      const attempts = await Promise.all(clients.flatMap((c) => Array.from({ length: perClient }, () => increment(c))));
      const final = await client.get({ key: b('counter'), consistency: 2 });
      assert.equal(final.data.toString(), String(clients.length * perClient));
      assert.ok(
        attempts.some((n) => n > 1),
        'with 40 increments in flight at once, some had to retry',
      );
    } finally {
      for (const c of clients) c.close();
    }
  });

  test('a conditional Write is all or nothing; one across partitions of the embedded log (one) is fine', async () => {
    const created = await client.write({
      mutations: [
        { key: b('acct-a'), value: b('100'), delete: false, condition: IF_ABSENT },
        { key: b('acct-b'), value: b('0'), delete: false, condition: IF_ABSENT },
      ],
      waitForApply: true,
    });
    assert.equal(created.status, SetStatus.APPLIED);
    const [a, bb] = created.results.map((r) => r.version) as [number, number];
    const transfer = await client.write({
      mutations: [
        { key: b('acct-a'), value: b('70'), delete: false, condition: ifVersion(a) },
        { key: b('acct-b'), value: b('30'), delete: false, condition: ifVersion(bb) },
      ],
      waitForApply: true,
    });
    assert.equal(transfer.status, SetStatus.APPLIED);
    // Replayed with the old versions: refused as a whole.
    const replay = await client.write({
      mutations: [
        { key: b('acct-a'), value: b('40'), delete: false, condition: ifVersion(a) },
        { key: b('acct-b'), value: b('60'), delete: false, condition: ifVersion(bb) },
      ],
      waitForApply: true,
    });
    assert.equal(replay.status, SetStatus.CONFLICT);
    assert.deepEqual(
      replay.results.map((r) => r.version),
      transfer.results.map((r) => r.version),
    );
    const read = await client.multiGet({ keys: [b('acct-a'), b('acct-b')] });
    assert.deepEqual(
      read.parts.map((p) => p.data.toString()),
      ['70', '30'],
    );
  });

  test('bad conditions are refused with INVALID_ARGUMENT and write nothing', async () => {
    for (const condition of [ifVersion(0), { kind: 99 as ConditionKind, version: 0 }, { ...IF_ABSENT, version: 3 }]) {
      await assert.rejects(client.set({ key: b('bad'), value: b('v'), condition }), (error) => {
        assert.equal(codeOf(error), status.INVALID_ARGUMENT);
        return true;
      });
    }
    assert.equal((await client.get({ key: b('bad'), consistency: 2 })).data.length, 0);
    assert.equal((await client.get({ key: b('bad'), consistency: 2 })).version, 0);
  });

  test('the CLI: put --if-absent, --if-version, --if-present and del --if-version; a conflict exits 6', async () => {
    const created = await kvs2(['put', 'cli-key', 'one', '--if-absent', '-o', 'json']);
    assert.equal(created.code, 0, created.stderr);
    const { status: createdStatus, version } = JSON.parse(created.stdout.toString()) as {
      status: string;
      version: number;
    };
    assert.equal(createdStatus, 'applied');
    const again = await kvs2(['put', 'cli-key', 'two', '--if-absent']);
    assert.equal(again.code, 6);
    assert.match(again.stdout.toString(), new RegExp(`^conflict version ${version} \\S+\\n$`));
    const updated = await kvs2(['put', 'cli-key', 'two', '--if-version', String(version)]);
    assert.equal(updated.code, 0, updated.stderr);
    assert.match(updated.stdout.toString(), /^applied version \d+ \S+\n$/);
    const staleDelete = await kvs2(['del', 'cli-key', '--if-version', String(version)]);
    assert.equal(staleDelete.code, 6);
    assert.equal((await kvs2(['put', 'cli-key', 'three', '--if-present'])).code, 0);
    const current = (await client.get({ key: b('cli-key'), consistency: 2 })).version;
    assert.equal((await kvs2(['del', 'cli-key', '--if-version', String(current), '--wait'])).code, 0);
    assert.equal((await kvs2(['put', 'cli-key', 'x', '--if-present'])).code, 6);
    const usage = await kvs2(['put', 'cli-key', 'x', '--if-version', '0']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--if-version must be a whole number of at least 1/);
    assert.equal((await kvs2(['put', 'cli-key', 'x', '--if-absent', '--if-present'])).code, 2);
  });
});
