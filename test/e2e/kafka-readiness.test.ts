import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { NodeState } from '../../src/gen/kvs2.js';
import { eventually, HealthClient, type HealthStatus, SeedClient } from '../support/grpc-clients.js';
import { kafkaBrokers, needsKafka } from '../support/kafka-env.js';
import { metricsPortOf } from '../support/metrics-port.js';
import { tempDir } from '../support/paths.js';
import { PlainKafka } from '../support/plain-kafka.js';
import { httpGet, samplesOf, scrape } from '../support/prometheus-text.js';
import { ServerProcess } from '../support/server-process.js';
import { statusOf, totalLag } from '../support/status-call.js';
import { StoreWriteLock } from '../support/store-write-lock.js';

const PARTITIONS = 3;

/**
 * Readiness against real Kafka: a real bootstrap, and a real lag behind a topic others keep writing, seen
 * through every probe a deployment uses: gRPC health, Status, HTTP /livez and /readyz and the lag metric.
 */
describe('readiness of a node on Kafka', needsKafka(), () => {
  let brokers: string;
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let plain: PlainKafka;
  const running: ServerProcess[] = [];

  const newTopic = async (): Promise<string> => {
    const topic = `kvs2-test-${randomUUID()}`;
    await plain.createTopic(topic, PARTITIONS, { 'cleanup.policy': 'compact' });
    return topic;
  };
  /** The HTTP probes' answers and the lag metric's sum over partitions (null: no partition's end known). */
  const httpProbes = async (port: number) => {
    const [livez, readyz, page] = await Promise.all([httpGet(port, '/livez'), httpGet(port, '/readyz'), scrape(port)]);
    const lags = samplesOf(page, 'kvs2_replica_lag_records');
    return {
      livez: livez.status,
      readyz: readyz.status,
      lag: lags.length === 0 ? null : lags.reduce((sum, sample) => sum + sample.value, 0),
    };
  };
  /** Writes `count` records with a plain producer, as another application would. */
  const produce = async (topic: string, prefix: string, count: number): Promise<void> => {
    const value = Buffer.alloc(50, 'v');
    for (let i = 0; i < count; i += 5000) {
      const n = Math.min(5000, count - i);
      await plain.produce(
        topic,
        Array.from({ length: n }, (_, j) => ({ key: Buffer.from(`${prefix}-${i + j}`), value })),
      );
    }
  };
  const startNode = async (name: string, topic: string, extra: string[] = []): Promise<ServerProcess> => {
    const node = await ServerProcess.start({
      dataDir: `${dir.path}/${name}`,
      args: [
        '--kafka-brokers',
        brokers,
        '--topic',
        topic,
        '--partitions',
        String(PARTITIONS),
        '--metrics-listen',
        '127.0.0.1:0',
        ...extra,
      ],
    });
    running.push(node);
    return node;
  };

  before(async () => {
    brokers = kafkaBrokers().join(',');
    dir = await tempDir('kafka-readiness');
    plain = new PlainKafka(brokers);
  });
  after(async () => {
    await Promise.all(running.map((node) => node.stop()));
    await plain.close();
    await dir.remove();
  });

  test('bootstrapping a topic: alive (liveness SERVING) but not ready (kvs2.Kvs2 NOT_SERVING), then ready', async () => {
    const RECORDS = 100_000;
    const topic = await newTopic();
    await produce(topic, 'boot', RECORDS);
    const node = await startNode('bootstrap', topic);
    const metricsPort = await metricsPortOf(node);
    const health = new HealthClient(node.address);
    const rounds: Array<{
      ready: HealthStatus;
      live: HealthStatus;
      state: NodeState;
      lag: number;
      http: Awaited<ReturnType<typeof httpProbes>>;
    }> = [];
    try {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const [ready, live, status, http] = await Promise.all([
          health.check('kvs2.Kvs2'),
          health.check('liveness'),
          statusOf(node.address),
          httpProbes(metricsPort),
        ]);
        rounds.push({ ready, live, state: status.state, lag: totalLag(status), http });
        if (ready === 'SERVING') break;
        assert.ok(Date.now() < deadline, 'the node never became ready');
      }
    } finally {
      health.close();
    }
    const during = rounds.filter((round) => round.ready === 'NOT_SERVING');
    assert.ok(during.length > 0, 'the bootstrap was seen from outside');
    assert.ok(
      rounds.every((round) => round.live === 'SERVING'),
      'alive all along',
    );
    assert.ok(
      during.some((round) => round.state === NodeState.NODE_STATE_STARTING && round.lag > 0),
      `Status said STARTING with a lag during the bootstrap: ${JSON.stringify(during.slice(0, 5))}`,
    );
    // The HTTP probes agree: alive all along; not ready while the metric shows a lag.
    assert.ok(
      rounds.every((round) => round.http.livez === 200),
      'HTTP /livez 200 all along',
    );
    assert.ok(
      rounds.some((round) => round.http.readyz === 503 && (round.http.lag ?? 0) > 0),
      `HTTP /readyz 503 with kvs2_replica_lag_records > 0 during the bootstrap: ${JSON.stringify(rounds.slice(0, 5))}`,
    );
    const readyNow = await httpProbes(metricsPort);
    assert.equal(readyNow.readyz, 200);
    // Ready means caught up with what the topic held at the start.
    await node.waitUntilCaughtUp(1000);
    const status = await statusOf(node.address);
    assert.equal(status.state, NodeState.NODE_STATE_SERVING);
    assert.equal(status.logKind, 'kafka');
    assert.ok(status.logDescription.includes(topic), status.logDescription);
    assert.equal(status.keys, RECORDS);
    assert.deepEqual(
      status.partitions.map((p) => p.partition),
      [0, 1, 2],
    );
    assert.equal(
      status.partitions.reduce((sum, p) => sum + p.appliedOffset, 0),
      RECORDS,
    );
    assert.equal(totalLag(status), 0);
    await node.stop();
  });

  test('with --max-ready-lag: a node whose store cannot keep up with the topic is NOT_SERVING until it is back', async () => {
    const MAX_READY_LAG = 1000;
    const topic = await newTopic();
    const node = await startNode('lag', topic, ['--max-ready-lag', String(MAX_READY_LAG)]);
    const metricsPort = await metricsPortOf(node);
    await node.waitUntilCaughtUp();
    const health = new HealthClient(node.address);
    const reader = new SeedClient(node.address);
    try {
      await eventually(async () => (await health.check('kvs2.Kvs2')) === 'SERVING', 10_000, 'ready');
      await produce(topic, 'before', 10);
      await eventually(async () => (await statusOf(node.address)).keys === 10, 10_000, 'the first records applied');

      // Another process takes the store's write lock: the replica can apply nothing while the topic
      // keeps growing, as behind a stalled disk.
      const lock = await StoreWriteLock.hold(`${dir.path}/lag/store`, dir.path);
      try {
        await produce(topic, 'burst', 3 * MAX_READY_LAG);
        await eventually(async () => (await health.check('kvs2.Kvs2')) === 'NOT_SERVING', 20_000, 'NOT_SERVING');
        assert.equal(await health.check('liveness'), 'SERVING');
        assert.equal(await health.check(''), 'NOT_SERVING');
        const lagging = await statusOf(node.address);
        assert.equal(lagging.state, NodeState.NODE_STATE_LAGGING);
        assert.ok(totalLag(lagging) > MAX_READY_LAG, `lag ${totalLag(lagging)}`);
        assert.equal(lagging.keys, 10);
        const http = await httpProbes(metricsPort);
        assert.equal(http.livez, 200);
        assert.equal(http.readyz, 503);
        assert.ok((http.lag ?? 0) > MAX_READY_LAG, `kvs2_replica_lag_records sums to ${http.lag}`);
        // Reads still answer, from what the node has.
        assert.equal((await reader.get(Buffer.from('before-0'))).status, 'OK');
      } finally {
        await lock.release();
      }
      await eventually(async () => (await health.check('kvs2.Kvs2')) === 'SERVING', 30_000, 'SERVING again');
      const back = await statusOf(node.address);
      assert.equal(back.state, NodeState.NODE_STATE_SERVING);
      assert.equal((await httpProbes(metricsPort)).readyz, 200);
      assert.ok(totalLag(back) <= MAX_READY_LAG, `lag ${totalLag(back)}`);
      await eventually(async () => (await statusOf(node.address)).keys === 10 + 3 * MAX_READY_LAG, 10_000, 'all keys');
    } finally {
      health.close();
      reader.close();
    }
    await node.stop();
  });
});
