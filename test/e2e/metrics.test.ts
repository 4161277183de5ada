import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { KvsNode } from '../../src/cli/node.js';
import { ConditionKind, Kvs2Client, SetStatus } from '../../src/client/kvs2-client.js';
import { parseConfig } from '../../src/config/config.js';
import { createLogger } from '../../src/logger.js';
import { eventually, SeedClient } from '../support/grpc-clients.js';
import { kafkaBrokers, needsKafka } from '../support/kafka-env.js';
import { metricsPortOf } from '../support/metrics-port.js';
import { KVS2_BIN, REPO_ROOT, tempDir } from '../support/paths.js';
import { httpGet, type Scrape, sampleValue, scrape } from '../support/prometheus-text.js';
import { ServerProcess } from '../support/server-process.js';

const GET = { grpc_service: 'kvs2.Kvs2', grpc_method: 'Get', grpc_type: 'unary' };
const SET = { grpc_service: 'kvs2.Kvs2', grpc_method: 'Set', grpc_type: 'unary' };
const WATCH = { grpc_service: 'kvs2.Kvs2', grpc_method: 'Watch', grpc_type: 'server_stream' };

/** Scrapes until `check` holds for a scrape, within a deadline; returns that scrape. */
async function scrapeUntil(port: number, check: (s: Scrape) => boolean, what: string): Promise<Scrape> {
  let last: Scrape | undefined;
  await eventually(
    async () => {
      last = await scrape(port);
      return check(last);
    },
    15_000,
    what,
  );
  return last as Scrape;
}

describe('metrics and probes on --metrics-listen', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let server: ServerProcess;
  let port: number;
  let version: string;

  before(async () => {
    dir = await tempDir('metrics');
    version = (JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    server = await ServerProcess.start({ dataDir: `${dir.path}/node`, args: ['--metrics-listen', '127.0.0.1:0'] });
    port = await metricsPortOf(server);
    await server.waitUntilCaughtUp();
  });
  after(async () => {
    await server?.stop();
    await dir.remove();
  });

  test('gRPC calls are counted by method and code, and timed, as go-grpc-prometheus names them', async () => {
    const client = new SeedClient(server.address);
    try {
      // Applied before the Gets (a plain Set's acknowledgement precedes its apply); still one Set call.
      const writer = new Kvs2Client(server.address);
      await writer.set({ key: Buffer.from('counted'), value: Buffer.from('v'), waitForApply: true });
      writer.close();
      const gets = 37;
      for (let i = 0; i < gets; i++) assert.equal((await client.get(Buffer.from('counted'))).status, 'OK');
      await assert.rejects(client.get(Buffer.alloc(0)), (error: { code?: number }) => {
        assert.equal(error.code, status.INVALID_ARGUMENT);
        return true;
      });

      const page = await scrape(port);
      assert.equal(sampleValue(page, 'grpc_server_started_total', GET), gets + 1);
      assert.equal(sampleValue(page, 'grpc_server_handled_total', { ...GET, grpc_code: 'OK' }), gets);
      assert.equal(sampleValue(page, 'grpc_server_handled_total', { ...GET, grpc_code: 'InvalidArgument' }), 1);
      assert.equal(sampleValue(page, 'grpc_server_handled_total', { ...SET, grpc_code: 'OK' }), 1);
      assert.equal(page.types.get('grpc_server_handling_seconds'), 'histogram');
      assert.equal(sampleValue(page, 'grpc_server_handling_seconds_count', GET), gets + 1);
      assert.equal(sampleValue(page, 'grpc_server_handling_seconds_bucket', { ...GET, le: '+Inf' }), gets + 1);
      const sum = sampleValue(page, 'grpc_server_handling_seconds_sum', GET) ?? Number.NaN;
      assert.ok(sum > 0 && sum < gets + 1, `${sum} s for ${gets + 1} local calls`);
      // Buckets are cumulative: never decreasing, up to the count.
      const buckets = page.samples
        .filter((s) => s.name === 'grpc_server_handling_seconds_bucket' && s.labels.grpc_method === 'Get')
        .map((s) => s.value);
      assert.equal(buckets.length, 17);
      assert.deepEqual(
        buckets,
        [...buckets].sort((a, b) => a - b),
      );
    } finally {
      client.close();
    }
  });

  test('log appends, store keys and size, replica progress, readiness and build info', async () => {
    const page = await scrape(port);
    const appendsBefore = sampleValue(page, 'kvs2_log_appends_total', { result: 'ok' }) ?? Number.NaN;
    const keysBefore = sampleValue(page, 'kvs2_store_keys') ?? Number.NaN;
    const client = new SeedClient(server.address);
    const writes = 25;
    try {
      await Promise.all(
        Array.from({ length: writes }, (_, i) => client.set(Buffer.from(`store-${i}`), Buffer.alloc(1000, i))),
      );
    } finally {
      client.close();
    }
    const after = await scrapeUntil(
      port,
      (s) =>
        sampleValue(s, 'kvs2_store_keys') === keysBefore + writes &&
        sampleValue(s, 'kvs2_replica_lag_records', { partition: '0' }) === 0 &&
        sampleValue(s, 'kvs2_replica_end_offset', { partition: '0' }) === appendsBefore + writes,
      'the writes applied, and the replica caught up with the end it learnt',
    );
    assert.equal(sampleValue(after, 'kvs2_log_appends_total', { result: 'ok' }), appendsBefore + writes);
    assert.equal(sampleValue(after, 'kvs2_log_appends_total', { result: 'error' }), 0);
    assert.equal(sampleValue(after, 'kvs2_log_append_seconds_count'), appendsBefore + writes);
    // The embedded log has one partition, whose offsets count the appends since the store was created.
    assert.equal(sampleValue(after, 'kvs2_replica_applied_offset', { partition: '0' }), appendsBefore + writes);
    assert.ok((sampleValue(after, 'kvs2_store_size_bytes') ?? 0) >= writes * 1000);
    const leafFill = sampleValue(after, 'kvs2_store_leaf_fill_ratio') ?? Number.NaN;
    assert.ok(leafFill > 0 && leafFill <= 1, `leaf fill ${leafFill}`);
    assert.equal(sampleValue(after, 'kvs2_ready'), 1);
    assert.equal(sampleValue(after, 'kvs2_replica_bootstrap_ratio'), 1);
    const sinceCaughtUp = sampleValue(after, 'kvs2_replica_seconds_since_caught_up') ?? Number.NaN;
    assert.ok(sinceCaughtUp >= 0 && sinceCaughtUp < 600, `${sinceCaughtUp} s since caught up`);
    assert.equal(sampleValue(after, 'kvs2_build_info', { version }), 1);
    assert.equal(sampleValue(after, 'kvs2_watches_open'), 0);
    // prom-client's defaults, event-loop lag included.
    assert.ok((sampleValue(after, 'process_cpu_user_seconds_total') ?? 0) > 0);
    assert.ok(sampleValue(after, 'nodejs_eventloop_lag_seconds') !== undefined);
    assert.ok((sampleValue(after, 'nodejs_heap_size_used_bytes') ?? 0) > 0);
  });

  test('conditional writes are counted by outcome and timed', async () => {
    const before = await scrape(port);
    const count = (page: Scrape, outcome: string): number =>
      sampleValue(page, 'kvs2_conditional_writes_total', { outcome }) ?? Number.NaN;
    const client = new Kvs2Client(server.address);
    const key = Buffer.from(`cas-metrics-${randomUUID()}`);
    const absent = { kind: ConditionKind.CONDITION_ABSENT, version: 0 };
    try {
      assert.equal((await client.set({ key, value: Buffer.from('1'), condition: absent })).status, SetStatus.APPLIED);
      assert.equal((await client.set({ key, value: Buffer.from('2'), condition: absent })).status, SetStatus.CONFLICT);
      assert.equal((await client.set({ key, value: Buffer.from('3'), condition: absent })).status, SetStatus.CONFLICT);
    } finally {
      client.close();
    }
    const after = await scrape(port);
    assert.equal(count(after, 'applied'), count(before, 'applied') + 1);
    assert.equal(count(after, 'conflict'), count(before, 'conflict') + 2);
    assert.equal(count(after, 'error'), count(before, 'error'));
    assert.equal(
      sampleValue(after, 'kvs2_conditional_write_seconds_count'),
      (sampleValue(before, 'kvs2_conditional_write_seconds_count') ?? Number.NaN) + 3,
    );
  });

  test('open watches are a gauge, and a cancelled watch is handled with Canceled', async () => {
    const client = new Kvs2Client(server.address);
    try {
      const watch = client.watch({ prefix: Buffer.from('w/') });
      watch.on('error', () => {});
      await once(watch, 'metadata');
      const open = await scrape(port);
      assert.equal(sampleValue(open, 'kvs2_watches_open'), 1);
      assert.equal(sampleValue(open, 'grpc_server_started_total', WATCH), 1);
      watch.cancel();
      const closed = await scrapeUntil(
        port,
        (s) => sampleValue(s, 'grpc_server_handled_total', { ...WATCH, grpc_code: 'Canceled' }) === 1,
        'the watch counted as cancelled',
      );
      assert.equal(sampleValue(closed, 'kvs2_watches_open'), 0);
    } finally {
      client.close();
    }
  });

  test('/livez and /readyz answer 200 with the state; other paths 404, other methods 405; HEAD has no body', async () => {
    assert.deepEqual(await httpGet(port, '/livez'), {
      status: 200,
      contentType: 'text/plain; charset=utf-8',
      body: 'ok\n',
    });
    assert.deepEqual(await httpGet(port, '/readyz'), {
      status: 200,
      contentType: 'text/plain; charset=utf-8',
      body: 'serving\n',
    });
    assert.equal((await httpGet(port, '/readyz?verbose')).status, 200);
    assert.equal((await httpGet(port, '/')).status, 404);
    assert.equal((await httpGet(port, '/metrics/extra')).status, 404);
    assert.equal((await httpGet(port, '/metrics', 'POST')).status, 405);
    const head = await httpGet(port, '/metrics', 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
  });
});

describe('probes of a node that cannot reach its log', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let server: ServerProcess | undefined;
  before(async () => {
    dir = await tempDir('metrics-starting');
  });
  after(async () => {
    await server?.stop();
    await dir.remove();
  });

  test('alive but not ready: /livez 200, /readyz 503 "starting", kvs2_ready 0, no catch-up yet', async () => {
    // Nothing listens on port 1: the node listens and waits for its brokers, as during an outage at start.
    server = await ServerProcess.start({
      dataDir: `${dir.path}/node`,
      args: ['--kafka-brokers', '127.0.0.1:1', '--metrics-listen', '127.0.0.1:0'],
    });
    const port = await metricsPortOf(server);
    assert.equal((await httpGet(port, '/livez')).status, 200);
    const ready = await httpGet(port, '/readyz');
    assert.deepEqual([ready.status, ready.body], [503, 'starting\n']);
    const page = await scrape(port);
    assert.equal(sampleValue(page, 'kvs2_ready'), 0);
    assert.equal(sampleValue(page, 'kvs2_replica_bootstrap_ratio'), 0);
    assert.ok(Number.isNaN(sampleValue(page, 'kvs2_replica_seconds_since_caught_up')));
    assert.equal(sampleValue(page, 'kvs2_replica_lag_records', { partition: '0' }), undefined);
    assert.equal((await server.stop()).code, 0);
  });
});

describe('the metrics listener in the node', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir('metrics-node');
  });
  after(async () => {
    await dir.remove();
  });

  const startNode = (name: string, metricsListen?: string): Promise<KvsNode> =>
    KvsNode.start({
      config: parseConfig({
        listen: '127.0.0.1:0',
        'data-dir': join(dir.path, name),
        ...(metricsListen === undefined ? {} : { 'metrics-listen': metricsListen }),
      }),
      logger: createLogger('silent'),
      onFatal: (error) => assert.fail(error),
    });

  test('two nodes in one process keep registries of their own, and each closes its listener', async () => {
    const a = await startNode('a', '127.0.0.1:0');
    const b = await startNode('b', '127.0.0.1:0');
    const portA = a.metricsPort as number;
    const portB = b.metricsPort as number;
    try {
      const client = new SeedClient(`127.0.0.1:${a.port}`);
      await client.get(Buffer.from('only-on-a'));
      client.close();
      assert.equal(sampleValue(await scrape(portA), 'grpc_server_handled_total', { ...GET, grpc_code: 'OK' }), 1);
      assert.equal(sampleValue(await scrape(portB), 'grpc_server_handled_total', { ...GET, grpc_code: 'OK' }), 0);
    } finally {
      await a.close();
      await b.close();
    }
    // This process (and its pooled keep-alive connections to them) lives on: the nodes closed the listeners.
    await assert.rejects(httpGet(portA, '/livez'));
    await assert.rejects(httpGet(portB, '/livez'));
  });

  test('without --metrics-listen there is no listener', async () => {
    const node = await startNode('off');
    try {
      assert.equal(node.metricsPort, null);
    } finally {
      await node.close();
    }
  });

  test('a node serving without --metrics-listen loads neither prom-client nor the OpenTelemetry API', async () => {
    // Every module the serving process loads, written when it exits (a load hook given through NODE_OPTIONS,
    // which the process keeps when it restarts itself with its runtime settings).
    const listFile = join(dir.path, 'modules.txt');
    const hook = [
      "import { registerHooks } from 'node:module';",
      "import { writeFileSync } from 'node:fs';",
      'const seen = [];',
      'registerHooks({ load(url, context, next) { seen.push(url); return next(url, context); } });',
      "process.on('exit', () => writeFileSync(process.env.KVS2_TEST_MODULE_LIST, seen.join('\\n')));",
    ].join('\n');
    const server = await ServerProcess.start({
      dataDir: join(dir.path, 'no-metrics'),
      env: {
        NODE_OPTIONS: `--import=data:text/javascript,${encodeURIComponent(hook)}`,
        KVS2_TEST_MODULE_LIST: listFile,
      },
    });
    await server.waitUntilCaughtUp();
    const seed = new SeedClient(server.address);
    try {
      await seed.set(Buffer.from('k'), Buffer.from('v'));
    } finally {
      seed.close();
    }
    assert.deepEqual(await server.stop(), { code: 0, signal: null });
    const loaded = (await readFile(listFile, 'utf8')).split('\n');
    // Checks the list is the serving process's: its gRPC server and store were loaded.
    assert.ok(loaded.some((url) => url.includes('/@grpc/grpc-js/')));
    assert.ok(loaded.some((url) => url.includes('/lmdb/')));
    assert.deepEqual(
      loaded.filter((url) => url.includes('/prom-client/') || url.includes('/@opentelemetry/')),
      [],
    );
  });

  test('a --metrics-listen that is not host:port is a usage error (exit code 2) naming the flag', () => {
    const result = spawnSync(
      process.execPath,
      [KVS2_BIN, 'serve', '--data-dir', join(dir.path, 'bad'), '--metrics-listen', '9464'],
      { encoding: 'utf8', timeout: 20_000 },
    );
    assert.equal(result.status, 2);
    assert.match(result.stderr, /--metrics-listen.*expected host:port.*'9464'/);
    const fromEnv = spawnSync(process.execPath, [KVS2_BIN, 'serve', '--data-dir', join(dir.path, 'bad')], {
      encoding: 'utf8',
      timeout: 20_000,
      env: { ...process.env, KVS2_METRICS_LISTEN: 'localhost:99999' },
    });
    assert.equal(fromEnv.status, 2);
    assert.match(fromEnv.stderr, /--metrics-listen/);
  });
});

describe('metrics of a node on Kafka', needsKafka(), () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let server: ServerProcess | undefined;
  before(async () => {
    dir = await tempDir('metrics-kafka');
  });
  after(async () => {
    await server?.stop();
    await dir.remove();
  });

  test("the Kafka client's own metrics, and the replica's progress for every partition", async () => {
    server = await ServerProcess.start({
      dataDir: `${dir.path}/node`,
      args: [
        '--kafka-brokers',
        kafkaBrokers().join(','),
        '--topic',
        `kvs2-test-${randomUUID()}`,
        '--partitions',
        '3',
        '--metrics-listen',
        '127.0.0.1:0',
      ],
    });
    const port = await metricsPortOf(server);
    await server.waitUntilCaughtUp(60_000);
    const client = new SeedClient(server.address);
    const writes = 30;
    try {
      await Promise.all(Array.from({ length: writes }, (_, i) => client.set(Buffer.from(`k-${i}`), Buffer.from('v'))));
    } finally {
      client.close();
    }
    const page = await scrapeUntil(
      port,
      (s) =>
        sampleValue(s, 'kvs2_store_keys') === writes &&
        [0, 1, 2].every((p) => sampleValue(s, 'kvs2_replica_lag_records', { partition: String(p) }) === 0) &&
        [0, 1, 2].reduce(
          (sum, p) => sum + (sampleValue(s, 'kvs2_replica_end_offset', { partition: String(p) }) ?? 0),
          0,
        ) >= writes,
      'every partition applied up to the end the replica learnt',
    );
    assert.equal(sampleValue(page, 'kvs2_log_appends_total', { result: 'ok' }), writes);
    assert.ok((sampleValue(page, 'kafka_producers') ?? 0) >= 1);
    assert.ok((sampleValue(page, 'kafka_consumers') ?? 0) >= 1);
    assert.ok((sampleValue(page, 'kafka_produced_messages') ?? 0) >= writes);
  });
});
