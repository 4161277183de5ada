import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Consistency, Kvs2Client, ReadStatus } from '../../src/client/kvs2-client.js';
import type { WatchEvent } from '../../src/gen/kvs2.js';
import { runKvs2 } from '../support/cli-process.js';
import { eventually } from '../support/grpc-clients.js';
import { metricsPortOf } from '../support/metrics-port.js';
import { tempDir } from '../support/paths.js';
import { sampleValue, scrape } from '../support/prometheus-text.js';
import { ServerProcess } from '../support/server-process.js';

const b = (text: string): Buffer => Buffer.from(text);

/** Clients on connections of their own (grpc-js shares one between clients of an address otherwise). */
function ownConnection(address: string): Kvs2Client {
  return new Kvs2Client(address, { ownConnection: true });
}

// Every other e2e file also runs against serve workers in `npm test` (scripts/test.sh); these are the
// properties only a node with several serving threads has.
describe('a node whose gRPC is served by worker threads (--serve-workers 2)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let server: ServerProcess;
  let clients: Kvs2Client[];

  before(async () => {
    dir = await tempDir('serve-workers');
    server = await ServerProcess.start({
      dataDir: dir.path,
      args: ['--serve-workers', '2', '--log-level', 'debug', '--metrics-listen', '127.0.0.1:0'],
    });
    await server.waitUntilCaughtUp();
    clients = Array.from({ length: 16 }, () => ownConnection(server.address));
    // One call each, so that every client has connected.
    await Promise.all(clients.map((client, i) => client.set({ key: b(`warm-${i}`), value: b('w') })));
  });
  after(async () => {
    for (const client of clients) client.close();
    assert.equal((await server.stop()).code, 0);
    await dir.remove();
  });

  test('the kernel spreads connections over both workers', () => {
    const workers = new Set(
      server.lines.filter((line) => line.msg === 'connection accepted').map((line) => line.worker as number),
    );
    // 16 connections all to one worker: a chance of 2 in 65,536 if the kernel spreads them evenly.
    assert.deepEqual([...workers].sort(), [0, 1]);
  });

  test('a write through one connection is read with its token through every other (whichever worker serves it)', async () => {
    for (let round = 0; round < 20; round++) {
      const writer = clients[round % clients.length] as Kvs2Client;
      const { token } = await writer.set({ key: b('shared'), value: b(`v${round}`) });
      const reads = await Promise.all(
        clients.map((client) =>
          client.get({ key: b('shared'), consistency: Consistency.CONSISTENCY_AT_LEAST, after: [token] }),
        ),
      );
      for (const read of reads) assert.deepEqual([read.status, read.data.toString()], [ReadStatus.OK, `v${round}`]);
    }
  });

  test('a watch on every connection hears the writes made through all the others, in order', async () => {
    const watches = clients.map((client) => {
      const events: WatchEvent[] = [];
      const stream = client.watch({ key: b(''), prefix: b('w/') });
      stream.on('data', (event: WatchEvent) => events.push(event));
      stream.on('error', () => {});
      return { events, stream };
    });
    // The watches' response headers are sent once they have subscribed.
    await Promise.all(watches.map(({ stream }) => new Promise((resolve) => stream.once('metadata', resolve))));
    for (let i = 0; i < 40; i++) {
      await (clients[i % clients.length] as Kvs2Client).set({
        key: b(`w/${String(i).padStart(2, '0')}`),
        value: b(`${i}`),
      });
    }
    const expected = Array.from({ length: 40 }, (_, i) => `w/${String(i).padStart(2, '0')}=${i}`);
    for (const { events, stream } of watches) {
      const seen = () => events.filter((e) => e.key.length > 0).map((e) => `${e.key}=${e.value}`);
      await eventually(() => seen().length >= 40, 10_000, 'every write seen by every watch');
      assert.deepEqual(seen(), expected);
      stream.cancel();
    }
  });

  test("the node's /metrics counts the calls of every worker", async () => {
    const port = await metricsPortOf(server);
    const labels = { grpc_service: 'kvs2.Kvs2', grpc_method: 'Get', grpc_code: 'OK' };
    const before = sampleValue(await scrape(port), 'grpc_server_handled_total', labels) ?? 0;
    await Promise.all(clients.flatMap((client) => [0, 1, 2].map(() => client.get({ key: b('shared') }))));
    const after = sampleValue(await scrape(port), 'grpc_server_handled_total', labels);
    assert.equal(after, before + clients.length * 3);
  });
});

describe('--serve-workers', () => {
  test('more than 64 is a usage error', async () => {
    const dir = await tempDir('serve-workers-usage');
    try {
      const exit = await runKvs2(['serve', '--listen', '127.0.0.1:0', '--data-dir', dir.path, '--serve-workers', '65']);
      assert.equal(exit.code, 2);
      assert.match(exit.stderr, /--serve-workers/);
    } finally {
      await dir.remove();
    }
  });
});
