import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { credentials } from '@grpc/grpc-js';
import { Kvs2Client, NodeState } from '../../src/gen/kvs2.js';
import { decodeToken } from '../../src/service/consistency-token.js';
import { eventually, HealthClient } from '../support/grpc-clients.js';
import { REPO_ROOT, tempDir } from '../support/paths.js';
import { ServerProcess } from '../support/server-process.js';
import { statusOf } from '../support/status-call.js';

const KEYS = 200;
const VALUE = Buffer.alloc(2000, 'v');

/** The Status call and the health probes of a real node on the embedded log. */
describe('Status and probes of a node on the embedded log', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let server: ServerProcess;

  before(async () => {
    dir = await tempDir('node-status');
    server = await ServerProcess.start({ dataDir: dir.path });
    await server.waitUntilCaughtUp();
  });
  after(async () => {
    await server.stop();
    await dir.remove();
  });

  test('Status: SERVING, the version, the log, keys and store bytes after writes, a token of what is applied', async () => {
    const { version } = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    const client = new Kvs2Client(server.address, credentials.createInsecure());
    try {
      for (let i = 0; i < KEYS; i++) {
        await new Promise((resolve, reject) =>
          client.set({ key: Buffer.from(`key-${i}`), value: VALUE, waitForApply: true }, (e, r) =>
            e ? reject(e) : resolve(r),
          ),
        );
      }
    } finally {
      client.close();
    }
    // The end of the log is learnt every second: wait until the node has seen the last write's.
    await eventually(
      async () => (await statusOf(server.address)).partitions[0]?.endOffset === KEYS,
      10_000,
      'the end of the log at the last write',
    );
    const reply = await statusOf(server.address);
    assert.equal(reply.state, NodeState.NODE_STATE_SERVING);
    assert.equal(reply.version, version);
    assert.equal(reply.logKind, 'embedded');
    assert.ok(reply.logDescription.includes(dir.path), reply.logDescription);
    assert.deepEqual(reply.partitions, [{ partition: 0, appliedOffset: KEYS, endOffset: KEYS, lagRecords: 0 }]);
    assert.equal(reply.keys, KEYS);
    assert.ok(reply.storeBytes >= KEYS * VALUE.length, `${reply.storeBytes} store bytes`);
    assert.ok(reply.storeLeafFill > 0 && reply.storeLeafFill <= 1, `store leaf fill ${reply.storeLeafFill}`);
    assert.deepEqual(decodeToken(reply.token).offsets, new Map([[0, KEYS]]));
    assert.ok(reply.lastCaughtUpUnixMs > 0 && reply.lastCaughtUpUnixMs <= Date.now());
    assert.ok(reply.uptimeSeconds > 0);
  });

  test('health: "liveness", "" and "kvs2.Kvs2" SERVING when caught up; all NOT_SERVING at shutdown', async () => {
    const health = new HealthClient(server.address);
    try {
      for (const name of ['liveness', '', 'kvs2.Kvs2']) assert.equal(await health.check(name), 'SERVING', name);
      const liveness = health.watch('liveness');
      const ready = health.watch('kvs2.Kvs2');
      await eventually(() => liveness.statuses.length > 0 && ready.statuses.length > 0, 5000, 'both watches');
      assert.equal((await server.stop('SIGTERM')).code, 0);
      for (const watch of [liveness, ready]) {
        assert.equal(await watch.ended, 'end');
        assert.deepEqual(watch.statuses, ['SERVING', 'NOT_SERVING']);
      }
    } finally {
      health.close();
    }
  });
});
