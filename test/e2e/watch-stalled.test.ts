import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import http2 from 'node:http2';
import { after, before, describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { Consistency, Kvs2Client } from '../../src/client/kvs2-client.js';
import { WatchEvent, WatchEvent_Kind, WatchRequest } from '../../src/gen/kvs2.js';
import { eventually } from '../support/grpc-clients.js';
import { kafkaBrokers, needsKafka } from '../support/kafka-env.js';
import { tempDir } from '../support/paths.js';
import { ServerProcess } from '../support/server-process.js';

const b = (text: string): Buffer => Buffer.from(text);
const PUTS = 15_000;
const keyOf = (i: number): string => `stall/${String(i).padStart(5, '0')}`;

/**
 * A Watch over a raw HTTP/2 stream whose window is tiny and which stops reading once the server has
 * answered: the client then grants no more flow-control window, as a stalled or hostile client would.
 */
class StalledWatch {
  readonly #session: http2.ClientHttp2Session;
  readonly #stream: http2.ClientHttp2Stream;
  readonly subscribed: Promise<unknown>;

  constructor(address: string, request: WatchRequest) {
    this.#session = http2.connect(`http://${address}`, { settings: { initialWindowSize: 1024 } });
    this.#stream = this.#session.request({
      ':method': 'POST',
      ':path': '/kvs2.Kvs2/Watch',
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    this.#stream.pause();
    // The server sends its response headers once the watch is subscribed.
    this.subscribed = once(this.#stream, 'response');
    const body = WatchRequest.encode(request).finish();
    const frame = Buffer.alloc(5 + body.length);
    frame.writeUInt32BE(body.length, 1);
    frame.set(body, 5);
    this.#stream.end(frame);
  }

  /** Reads again: every event that reaches the client, then the status it ended with. */
  async readToEnd(): Promise<{ events: WatchEvent[]; code: number; message: string }> {
    const events: WatchEvent[] = [];
    let pending = Buffer.alloc(0);
    this.#stream.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
        const length = pending.readUInt32BE(1);
        events.push(WatchEvent.decode(pending.subarray(5, 5 + length)));
        pending = pending.subarray(5 + length);
      }
    });
    const trailers = once(this.#stream, 'trailers') as Promise<[http2.IncomingHttpHeaders]>;
    this.#stream.resume();
    const [headers] = await trailers;
    await once(this.#stream, 'close');
    return {
      events,
      code: Number(headers['grpc-status']),
      message: decodeURIComponent(String(headers['grpc-message'] ?? '')),
    };
  }

  close(): void {
    this.#session.close();
  }
}

/** Issue 11, defect 4: a watcher that stops granting HTTP/2 window must see no gap, and resume losslessly. */
describe('a stalled watcher on Kafka', needsKafka(), () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let server: ServerProcess;
  let client: Kvs2Client;

  before(async () => {
    dir = await tempDir('watch-stalled');
    const topic = `kvs2-test-${randomUUID()}`;
    // One partition: the log order is one total order, so "no gap" is exactly "consecutive keys".
    const args = ['--kafka-brokers', kafkaBrokers().join(','), '--topic', topic, '--partitions', '1'];
    server = await ServerProcess.start({ dataDir: dir.path, args: [...args, '--max-batch-keys', '2000'] });
    await server.waitUntilCaughtUp();
    client = new Kvs2Client(server.address);
  });
  after(async () => {
    client.close();
    await server.stop();
    await dir.remove();
  });

  test('is cut off without a gap, and resuming from its last token yields every later event once, in order', async () => {
    const stalled = new StalledWatch(server.address, {
      key: Buffer.alloc(0),
      prefix: b('stall/'),
      after: Buffer.alloc(0),
      progressIntervalMs: 0,
    });
    await stalled.subscribed;
    let last: Buffer = Buffer.alloc(0);
    for (let from = 0; from < PUTS; from += 1000) {
      const mutations = Array.from({ length: 1000 }, (_, i) => ({
        key: b(keyOf(from + i)),
        value: b('v'),
        delete: false,
      }));
      last = (await client.write({ mutations })).token;
    }
    // Once this read answers, the node has applied every put, so the watch has been offered all of them.
    await client.get({ key: b(keyOf(PUTS - 1)), consistency: Consistency.CONSISTENCY_AT_LEAST, after: [last] });

    const cut = await stalled.readToEnd();
    stalled.close();
    assert.equal(cut.code, status.RESOURCE_EXHAUSTED, cut.message);
    assert.match(cut.message, /resume with the token/);
    const received = cut.events.filter((e) => e.kind !== WatchEvent_Kind.PROGRESS).map((e) => e.key.toString());
    assert.ok(received.length > 0 && received.length < PUTS, `${received.length} events before the cut`);
    assert.deepEqual(
      received,
      received.map((_, i) => keyOf(i)),
      'the events before the cut are the first ones, without a gap',
    );
    const token = cut.events.at(-1)?.token;
    assert.ok(token);

    const resumed: WatchEvent[] = [];
    const stream = client.watch({ prefix: b('stall/'), after: token });
    stream.on('data', (event: WatchEvent) => {
      if (event.kind !== WatchEvent_Kind.PROGRESS) resumed.push(event);
    });
    const ended = new Promise((resolve) => stream.on('error', resolve));
    await once(stream, 'metadata');
    // A last put after the others: once it arrives, everything before it has arrived too.
    await client.set({ key: b('stall/zz-last'), value: b('v') });
    await eventually(
      () => resumed.at(-1)?.key.toString() === 'stall/zz-last',
      60_000,
      'the resumed watch to reach the last put',
    );
    stream.cancel();
    await ended;
    const expected = Array.from({ length: PUTS - received.length }, (_, i) => keyOf(received.length + i));
    assert.deepEqual(
      resumed.map((e) => e.key.toString()),
      [...expected, 'stall/zz-last'],
    );
  });
});
