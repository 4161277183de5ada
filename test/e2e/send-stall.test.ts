import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { connect as connectNet } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  type ChannelCredentials,
  type ClientOptions,
  credentials,
  Metadata,
  makeGenericClientConstructor,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import { Kvs2Client } from '../../src/client/index.js';
import {
  type Kvs2Client as GeneratedClient,
  Kvs2Service,
  type SnapshotChunk,
  SnapshotFormat,
} from '../../src/gen/kvs2.js';
import { storeDirOf } from '../../src/snapshot/data-dir.js';
import { installStoreImage } from '../../src/snapshot/image-install.js';
import { readStoreFile } from '../../src/store/store-file.js';
import { runKvs2 } from '../support/cli-process.js';
import { eventually } from '../support/grpc-clients.js';
import { tempDir } from '../support/paths.js';
import { type LogLine, ServerProcess } from '../support/server-process.js';
import { SilentPeer } from '../support/snapshot-peer.js';

/**
 * The node's send-side progress limit (--snapshot-send-stall-timeout-ms): a receiver that stops reading a
 * store image, on its direct socket or its Snapshot stream, has the transfer ended and the node's copy
 * removed; one that reads slowly but keeps reading gets the whole image. And `kvs2 snapshot save` gives up
 * on a node that sends nothing (--stall-timeout).
 *
 * The image is much larger than what kernels, HTTP/2 windows and grpc-js buffer between the two (a few MiB
 * here), so a receiver that stops reading does leave bytes waiting on the node.
 */
const KEYS = 4_000;
const VALUE_BYTES = 8 * 1024;
/** The node's limit: small for the test, well above a slow reader's pauses (LIMIT_MS / 4). */
const LIMIT_MS = 1_000;
/** A slow reader pauses this long after each 2 MiB it takes. */
const SLOW_PAUSE_MS = LIMIT_MS / 4;
const MIB = 1024 * 1024;

const RawClient = makeGenericClientConstructor(Kvs2Service, 'kvs2.Kvs2') as unknown as new (
  address: string,
  creds: ChannelCredentials,
  options?: Partial<ClientOptions>,
) => GeneratedClient;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The copies a node makes for store images, left in its store folder. */
function copiesIn(dataDir: string): string[] {
  const storeDir = storeDirOf(dataDir);
  return existsSync(storeDir) ? readdirSync(storeDir).filter((name) => name.startsWith('.store-image-')) : [];
}

/** Yields `chunks`, pausing SLOW_PAUSE_MS after each 2 MiB: slow, but never silent for the limit. */
async function* slowly(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let sinceLastPause = 0;
  for await (const chunk of chunks) {
    yield chunk;
    sinceLastPause += chunk.length;
    if (sinceLastPause >= 2 * MIB) {
      sinceLastPause = 0;
      await sleep(SLOW_PAUSE_MS);
    }
  }
}

describe('a node ends a snapshot whose receiver stops reading (--snapshot-send-stall-timeout-ms)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let node: ServerProcess;
  let nodeDir: string;
  let client: Kvs2Client;
  let raw: GeneratedClient;

  before(async () => {
    dir = await tempDir('send-stall');
    nodeDir = join(dir.path, 'node');
    node = await ServerProcess.start({
      dataDir: nodeDir,
      // 64 KiB messages on the stream: grpc-js's client buffers 16 messages of a paused call, not 16 MiB.
      args: [
        ...['--snapshot-send-stall-timeout-ms', String(LIMIT_MS)],
        ...['--max-value-bytes', String(2 * VALUE_BYTES), '--max-reply-bytes', String(64 * 1024)],
      ],
    });
    await node.waitUntilCaughtUp();
    client = new Kvs2Client(node.address);
    for (let i = 0; i < KEYS; i += 50) {
      const mutations = Array.from({ length: 50 }, (_, j) => ({
        key: Buffer.from(`key-${String(i + j).padStart(6, '0')}`),
        value: Buffer.alloc(VALUE_BYTES, (i + j) % 251),
        delete: false,
      }));
      await client.write({ mutations, waitForApply: true });
    }
    raw = new RawClient(node.address, credentials.createInsecure());
  });
  after(async () => {
    raw.close();
    client.close();
    assert.equal((await node.stop()).code, 0);
    await dir.remove();
  });

  /** The node's warning for a stalled transfer of `transfer`, once it logs one more than `before`. */
  async function stallLine(transfer: 'direct' | 'stream', seen: number): Promise<LogLine> {
    const stalls = (): LogLine[] => node.lines.filter((line) => line.transfer === transfer && 'bytesSent' in line);
    await node.waitForLine(() => stalls().length > seen, 30_000);
    return stalls()[seen] as LogLine;
  }

  test('a receiver that opens the direct transfer and stops reading: the call fails DEADLINE_EXCEEDED, the copy is removed, the node says so', async () => {
    const call = raw.snapshot(
      { maxBytesPerSecond: 0, format: SnapshotFormat.SNAPSHOT_FORMAT_STORE_IMAGE, directTransfer: true },
      new Metadata(),
    );
    const ended = new Promise<ServiceError | null>((resolve) => {
      call.on('error', resolve);
      call.on('end', () => resolve(null));
    });
    const first = await new Promise<SnapshotChunk>((resolve) => call.once('data', resolve));
    assert.ok(first.directTransfer !== undefined, 'the node hands out a direct transfer');
    const socket = connectNet(first.directTransfer.port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write(first.directTransfer.ticket);
    // Takes the first bytes, then reads nothing more (a hung process keeps its connection open).
    await new Promise<void>((resolve) => socket.once('data', () => resolve()));
    socket.pause();
    try {
      const error = await ended;
      assert.ok(error !== null, 'the transfer cannot have completed');
      assert.equal(error.code, status.DEADLINE_EXCEEDED, error.message);
      assert.match(
        error.details,
        new RegExp(`took nothing of the direct transfer .* for ${LIMIT_MS} ms, after \\d+ bytes`),
      );
      const line = await stallLine('direct', 0);
      assert.equal(line.level, 'warn');
      assert.equal(line.peer, `127.0.0.1:${socket.localPort}`);
      assert.ok(typeof line.bytesSent === 'number' && line.bytesSent > 0, JSON.stringify(line));
      assert.ok(line.bytesSent < KEYS * VALUE_BYTES, JSON.stringify(line));
      await eventually(() => copiesIn(nodeDir).length === 0, 15_000, 'the node to remove its copy');
      // The node destroyed the socket: it ends here too.
      socket.resume();
      await new Promise((resolve) => (socket.destroyed ? resolve(undefined) : socket.once('close', resolve)));
    } finally {
      socket.destroy();
    }
  });

  test('a receiver that stops reading the Snapshot stream: the node resets it and removes the copy', async () => {
    const call = raw.snapshot(
      { maxBytesPerSecond: 0, format: SnapshotFormat.SNAPSHOT_FORMAT_STORE_IMAGE, directTransfer: false },
      new Metadata(),
    );
    const ended = new Promise<ServiceError | null>((resolve) => {
      call.on('error', resolve);
      call.on('end', () => resolve(null));
    });
    let received = 0;
    await new Promise<void>((resolve) =>
      call.once('data', (chunk: SnapshotChunk) => {
        received += chunk.data.length;
        resolve();
      }),
    );
    call.pause();
    const line = await stallLine('stream', 0);
    assert.equal(line.level, 'warn');
    assert.ok(typeof line.bytesSent === 'number' && line.bytesSent > 0, JSON.stringify(line));
    assert.ok(line.bytesSent < KEYS * VALUE_BYTES, JSON.stringify(line));
    await eventually(() => copiesIn(nodeDir).length === 0, 15_000, 'the node to remove its copy');
    // What was buffered on this side can still be read; then the call fails (the reset), never ends whole.
    call.on('data', (chunk: SnapshotChunk) => {
      received += chunk.data.length;
    });
    call.resume();
    const error = await ended;
    assert.ok(error !== null, `the call ended whole after ${received} bytes`);
    assert.ok(
      error.code === status.CANCELLED || error.code === status.DEADLINE_EXCEEDED || error.code === status.INTERNAL,
      error.message,
    );
    assert.ok(received < KEYS * VALUE_BYTES);
  });

  for (const direct of [true, false]) {
    test(`a slow receiver that keeps reading gets the whole image (${direct ? 'direct' : 'stream'})`, async () => {
      const target = join(dir.path, `slow-${direct ? 'direct' : 'stream'}`);
      const transfer: string[] = [];
      const chunks = client.snapshot({ format: 'store-image', direct, onTransfer: (how) => transfer.push(how) });
      await installStoreImage(slowly(chunks), { dataDir: target, accept: () => {} });
      assert.deepEqual(transfer, [direct ? 'direct' : 'stream']);
      assert.equal((await readStoreFile(storeDirOf(target))).keys, KEYS);
      await eventually(() => copiesIn(nodeDir).length === 0, 15_000, 'the node to remove its copy');
    });
  }

  test('no transfer so far ended but the two stalled ones', () => {
    assert.equal(node.lines.filter((line) => 'bytesSent' in line).length, 2);
  });
});

describe('kvs2 snapshot save --stall-timeout', () => {
  test('against a peer that accepts and sends nothing: fails with a clear message, exit 3, no file', async () => {
    const dir = await tempDir('save-stall');
    const silent = await SilentPeer.start();
    try {
      const file = join(dir.path, 'backup.kvs2snap');
      const result = await runKvs2([
        'snapshot',
        'save',
        file,
        '--endpoint',
        silent.address,
        '--stall-timeout',
        '300ms',
      ]);
      assert.equal(result.code, 3, result.stderr);
      assert.match(result.stderr, /^kvs2 snapshot save: .*the node sent nothing for 300 ms before its first byte/m);
      assert.equal(existsSync(file), false);
      assert.ok(silent.connections >= 1);
    } finally {
      await silent.close();
      await dir.remove();
    }
  });

  test('--stall-timeout goes with --endpoint, not --data-dir', async () => {
    const result = await runKvs2(['snapshot', 'save', '-', '--data-dir', '/nonexistent', '--stall-timeout', '5s']);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /--stall-timeout goes with --endpoint/);
  });
});
