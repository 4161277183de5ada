import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Kvs2Client } from '../../src/client/index.js';
import { type CliResult, runKvs2 } from '../support/cli-process.js';
import { kafkaBrokers, needsKafka } from '../support/kafka-env.js';
import { tempDir } from '../support/paths.js';
import { ServerProcess } from '../support/server-process.js';

function ok(result: CliResult): string {
  assert.deepEqual([result.code, result.stderr], [0, ''], `stdout: ${result.stdout.toString()}`);
  return result.stdout.toString();
}

const total = (offsets: unknown): number =>
  Object.values(offsets as Record<string, number>).reduce((sum, offset) => sum + offset, 0);

/** Every key and value the node serves, after the writes of `token`. */
async function everything(client: Kvs2Client, token: Buffer): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  let continuation: Buffer = Buffer.alloc(0);
  do {
    const page = await client.scan({ continuation, after: [token], limit: 1000 });
    for (const { key, value } of page.items) found.set(key.toString(), value.toString());
    continuation = page.continuation;
  } while (continuation.length > 0);
  return found;
}

/** A store restored from a snapshot on Kafka, started on the topic: it resumes from the snapshot's positions. */
describe('kvs2 snapshot restore on Kafka', needsKafka(), () => {
  let brokers: string;
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    brokers = kafkaBrokers().join(',');
    dir = await tempDir('snapshot-kafka');
  });
  after(async () => {
    await dir.remove();
  });

  const start = (dataDir: string, topic: string) =>
    ServerProcess.start({ dataDir, args: ['--kafka-brokers', brokers, '--topic', topic, '--partitions', '3'] });

  /** Writes `count` keys `prefix/i` through the node and returns the batch's token. */
  async function writeKeys(node: ServerProcess, prefix: string, count: number, expected: Map<string, string>) {
    const client = new Kvs2Client(node.address);
    try {
      const mutations = Array.from({ length: count }, (_, i) => {
        expected.set(`${prefix}/${i}`, `${prefix} value ${i}`);
        return { key: Buffer.from(`${prefix}/${i}`), value: Buffer.from(`${prefix} value ${i}`), delete: false };
      });
      const reply = await client.write({ mutations, waitForApply: true });
      assert.ok(reply.results.every((result) => result.code === 0));
      return reply.token;
    } finally {
      client.close();
    }
  }

  test('the restored node reads only what came after the snapshot, serves every key, and takes writes', async () => {
    const topic = `kvs2-test-${randomUUID()}`;
    const source = join(dir.path, 'source');
    const expected = new Map<string, string>();
    let node = await start(source, topic);
    await node.waitUntilCaughtUp();
    const beforeToken = await writeKeys(node, 'before', 600, expected);
    assert.equal((await node.stop()).code, 0);

    const file = join(dir.path, 'kafka.kvs2snap');
    const saved = ok(await runKvs2(['snapshot', 'save', file, '--data-dir', source]));
    assert.match(saved, /log +kafka \(kafka:/);
    const snapshotAt = Number(
      /positions +(.*)\n/
        .exec(saved)?.[1]
        ?.split(' ')
        .reduce((sum, p) => sum + Number(p.split(':')[1]), 0),
    );
    assert.ok(snapshotAt >= 600, `the snapshot is at ${snapshotAt} records`);

    // More writes, and a delete of a key the snapshot holds, after the snapshot.
    node = await start(source, topic);
    await node.waitUntilCaughtUp();
    await writeKeys(node, 'after', 40, expected);
    const client = new Kvs2Client(node.address);
    await client.delete({ key: Buffer.from('before/0'), waitForApply: true });
    expected.delete('before/0');
    client.close();
    assert.equal((await node.stop()).code, 0);

    const restored = join(dir.path, 'restored');
    ok(await runKvs2(['snapshot', 'restore', file, '--data-dir', restored]));
    node = await start(restored, topic);
    try {
      const starting = await node.waitForLine((line) => line.msg === 'replica starting');
      assert.equal(total(starting.appliedOffsets), snapshotAt, 'it starts from the snapshot positions');
      const caughtUp = await node.waitUntilCaughtUp();
      assert.equal(caughtUp.appliedRecords, 41, 'it applied only the records after the snapshot');
      assert.equal(
        node.lines.some((line) => line.msg.startsWith('rebuilding')),
        false,
      );
      const restoredClient = new Kvs2Client(node.address);
      try {
        assert.deepEqual(await everything(restoredClient, beforeToken), expected);
        const later = await writeKeys(node, 'later', 5, expected);
        assert.deepEqual(await everything(restoredClient, later), expected);
      } finally {
        restoredClient.close();
      }
    } finally {
      assert.equal((await node.stop()).code, 0);
    }

    // On another topic the same snapshot is not resumed from: the node rebuilds from that topic, and says why.
    const elsewhere = join(dir.path, 'elsewhere');
    ok(await runKvs2(['snapshot', 'restore', file, '--data-dir', elsewhere]));
    node = await start(elsewhere, `kvs2-test-${randomUUID()}`);
    try {
      const warning = await node.waitForLine((line) => line.msg.startsWith('rebuilding the store'));
      assert.match(warning.msg, /the store was built from log kafka:.*, but .* is now log kafka:/);
      await node.waitUntilCaughtUp();
      const otherClient = new Kvs2Client(node.address);
      try {
        const status = await otherClient.status();
        assert.equal(status.keys, 0);
      } finally {
        otherClient.close();
      }
    } finally {
      assert.equal((await node.stop()).code, 0);
    }
  });
});
