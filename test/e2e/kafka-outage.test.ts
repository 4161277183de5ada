import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { Kvs2Client } from '../../src/client/kvs2-client.js';
import { eventually, HealthClient, SeedClient } from '../support/grpc-clients.js';
import { OwnKafkaCluster } from '../support/kafka-cluster.js';
import { needsKafka } from '../support/kafka-env.js';
import { tempDir } from '../support/paths.js';
import { PlainKafka } from '../support/plain-kafka.js';
import { ServerProcess } from '../support/server-process.js';

// These tests start clusters of their own (OwnKafkaCluster): they run wherever the shared one does.
describe('broker failures under a kvs2 node', needsKafka(), () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir('kafka-outage');
  });
  after(async () => {
    await dir.remove();
  });

  test('broker down: Set and Write fail within their deadline, reads go on; broker back: writes work again, no restart', async () => {
    const cluster = await OwnKafkaCluster.start(1);
    const node = await ServerProcess.start({
      dataDir: `${dir.path}/outage`,
      args: ['--kafka-brokers', cluster.brokers, '--topic', `kvs2-test-${randomUUID()}`, '--partitions', '2'],
    });
    const client = new SeedClient(node.address);
    const full = new Kvs2Client(node.address);
    try {
      await client.set(Buffer.from('before'), Buffer.from('outage'));
      await eventually(async () => (await client.get(Buffer.from('before'))).status === 'OK', 20_000, 'the write');

      await cluster.stopBroker(1);
      const started = Date.now();
      await assert.rejects(
        client.set(Buffer.from('during'), Buffer.from('outage'), 3000),
        (error: { code: number }) => {
          assert.ok(
            [status.UNAVAILABLE, status.DEADLINE_EXCEEDED].includes(error.code),
            `status ${error.code} is neither UNAVAILABLE nor DEADLINE_EXCEEDED`,
          );
          return true;
        },
      );
      assert.ok(Date.now() - started < 4500, `Set took ${Date.now() - started} ms to fail with a 3 s deadline`);
      // A Write fails as a whole within its deadline, however many mutations it carries.
      const mutations = Array.from({ length: 50 }, (_, i) => ({
        key: Buffer.from(`during-${i}`),
        value: Buffer.from('outage'),
        delete: false,
      }));
      const writeStarted = Date.now();
      await assert.rejects(full.write({ mutations }, 3000), (error: { code: number }) => {
        assert.ok(
          [status.UNAVAILABLE, status.DEADLINE_EXCEEDED].includes(error.code),
          `status ${error.code} is neither UNAVAILABLE nor DEADLINE_EXCEEDED`,
        );
        return true;
      });
      const writeMs = Date.now() - writeStarted;
      assert.ok(writeMs < 4500, `Write took ${writeMs} ms to fail with a 3 s deadline`);
      // Reads are served from the local store while Kafka is away.
      assert.deepEqual(await client.get(Buffer.from('before')), { status: 'OK', data: Buffer.from('outage') });

      await cluster.startBroker(1);
      await eventually(
        async () => {
          try {
            return (await client.set(Buffer.from('after'), Buffer.from('outage'), 3000)).status === 'PUBLISHED';
          } catch {
            return false;
          }
        },
        90_000,
        'writes to succeed again',
      );
      await eventually(async () => (await client.get(Buffer.from('after'))).status === 'OK', 30_000, 'the new write');
      assert.equal(node.child.exitCode, null, 'the node kept running');
    } finally {
      client.close();
      full.close();
      await node.stop();
      await cluster.stop();
    }
  });

  test('three brokers, one killed under writes: no acknowledged write is lost', async () => {
    const cluster = await OwnKafkaCluster.start(3);
    const topic = `kvs2-test-${randomUUID()}`;
    const node = await ServerProcess.start({
      dataDir: `${dir.path}/three-a`,
      args: ['--kafka-brokers', cluster.brokers, '--topic', topic, '--partitions', '3'],
    });
    const client = new SeedClient(node.address);
    const acknowledged: number[] = [];
    let failures = 0;
    try {
      let next = 0;
      const writer = async (): Promise<void> => {
        while (next < 3000) {
          const i = next++;
          try {
            await client.set(Buffer.from(`k${i}`), Buffer.from(`v${i}`), 5000);
            acknowledged.push(i);
          } catch {
            failures++;
          }
        }
      };
      const writers = Array.from({ length: 16 }, writer);
      await eventually(() => acknowledged.length >= 500, 60_000, 'writes before the crash');
      await cluster.stopBroker(2);
      await Promise.all(writers);
      assert.ok(acknowledged.length > 1000, `only ${acknowledged.length} writes acknowledged (${failures} failed)`);

      // A fresh node reads everything back from Kafka: what was acknowledged is in the topic.
      const fresh = await ServerProcess.start({
        dataDir: `${dir.path}/three-fresh`,
        args: ['--kafka-brokers', cluster.brokers, '--topic', topic],
      });
      try {
        await fresh.waitUntilCaughtUp(60_000);
        const reader = new SeedClient(fresh.address);
        for (let i = 0; i < acknowledged.length; i += 1000) {
          const keys = acknowledged.slice(i, i + 1000);
          const reply = await reader.multiGet(keys.map((k) => Buffer.from(`k${k}`)));
          reply.parts.forEach((part, j) => {
            assert.equal(part.status, 'OK', `acknowledged k${keys[j]} is lost`);
          });
        }
        reader.close();
      } finally {
        await fresh.stop();
      }
    } finally {
      client.close();
      await node.stop();
      await cluster.stop();
    }
  });

  describe('one broker, stopped and started again', () => {
    let cluster: OwnKafkaCluster;
    let node: ServerProcess | undefined;
    const topic = `kvs2-test-${randomUUID()}`;
    before(async () => {
      cluster = await OwnKafkaCluster.start(1);
    });
    after(async () => {
      await node?.stop();
      await cluster.stop();
    });

    test('a node started while its only broker is down listens NOT_SERVING, then serves once the broker is back', async () => {
      await cluster.stopBroker(1);
      const args = ['--kafka-brokers', cluster.brokers, '--topic', topic, '--partitions', '2'];
      // Resolves once the node says it listens: before the fix it exited instead.
      node = await ServerProcess.start({ dataDir: `${dir.path}/started-during-outage`, args });
      const waiting = await ServerProcess.start({ dataDir: `${dir.path}/stopped-during-outage`, args });
      const health = new HealthClient(node.address);
      const client = new SeedClient(node.address);
      try {
        assert.equal(await health.check('kvs2.Kvs2'), 'NOT_SERVING');
        await node.waitForLine((line) => line.msg.startsWith('waiting for the log'), 30_000);
        // A node told to stop while it waits for the log stops cleanly.
        await waiting.waitForLine((line) => line.msg.startsWith('waiting for the log'), 30_000);
        assert.deepEqual(await waiting.stop(), { code: 0, signal: null });

        await cluster.startBroker(1);
        await eventually(async () => (await health.check('kvs2.Kvs2')) === 'SERVING', 120_000, 'SERVING');
        assert.equal((await client.set(Buffer.from('k'), Buffer.from('v'), 10_000)).status, 'PUBLISHED');
        assert.equal(node.child.exitCode, null, 'the node kept running');
      } finally {
        health.close();
        client.close();
      }
    });

    test('a Set answered DEADLINE_EXCEEDED while the broker is down is not written once it is back', async () => {
      assert.ok(node !== undefined, 'the node of the test before is running');
      const client = new SeedClient(node.address);
      const plain = new PlainKafka(cluster.brokers);
      const key = Buffer.from('given-up');
      try {
        await cluster.stopBroker(1);
        await assert.rejects(client.set(key, Buffer.from('during'), 1_000), (error: { code: number }) => {
          assert.equal(error.code, status.DEADLINE_EXCEEDED);
          return true;
        });
        await cluster.startBroker(1);
        // The key's partition takes records in order: once this one is acknowledged, a late resend of the
        // one given up on would be in the topic before it.
        await eventually(
          async () => {
            try {
              return (await client.set(key, Buffer.from('after'), 5_000)).status === 'PUBLISHED';
            } catch {
              return false;
            }
          },
          90_000,
          'writes to succeed again',
        );
        const values = (await plain.readAll(topic))
          .filter((record) => record.key?.equals(key))
          .map((record) => record.value?.toString());
        assert.deepEqual([...new Set(values)], ['after'], 'only the acknowledged value is in the topic');
      } finally {
        client.close();
        await plain.close();
      }
    });
  });
});
