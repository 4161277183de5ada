import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { GrpcApi } from '../../src/api/grpc-server.js';
import { HealthService } from '../../src/api/health.js';
import { Kvs2Client, Kvs2ClientError } from '../../src/client/kvs2-client.js';
import type { Replica } from '../../src/replica/replica.js';
import { ConditionalWrites } from '../../src/service/conditional-writes.js';
import { KvService } from '../../src/service/kv-service.js';
import { NodeHealth } from '../../src/service/node-health.js';
import { NodeStatusReport } from '../../src/service/node-status.js';
import { installStoreImage, sniffSnapshot } from '../../src/snapshot/image-install.js';
import { verifySnapshot } from '../../src/snapshot/snapshot-install.js';
import { LmdbStore } from '../../src/store/lmdb-store.js';
import type { KeyValueReader, ScanPage, ScanRange } from '../../src/store/store.js';
import type { SnapshotSource, StoreFileSource, StoreSnapshot } from '../../src/store/store-snapshot.js';
import { KVS2_VERSION } from '../../src/version.js';
import { eventually } from '../support/grpc-clients.js';
import { tempDir } from '../support/paths.js';
import { END_GROUP_BYTE } from '../support/protobuf-wire.js';
import { RawGrpcClient } from '../support/raw-grpc-client.js';
import { b, noDeadline } from '../support/service-calls.js';
import { type ServiceNode, startLiveNode } from '../support/service-node.js';

/** The node's store, counting the snapshots taken of it that are not closed yet (each holds a read transaction). */
class CountedStore implements KeyValueReader, SnapshotSource, StoreFileSource {
  open = 0;
  taken = 0;
  /** Copies of the store's file made for store images. */
  copies = 0;
  constructor(readonly store: LmdbStore) {}

  get dir(): string {
    return this.store.dir;
  }

  copyCompacted(target: string): Promise<void> {
    this.copies++;
    return this.store.copyCompacted(target);
  }

  get(key: Buffer): Buffer | undefined {
    return this.store.get(key);
  }

  get lastVersion(): number {
    return this.store.lastVersion;
  }

  scan(range: ScanRange): ScanPage {
    return this.store.scan(range);
  }

  snapshot(): StoreSnapshot {
    const inner = this.store.snapshot();
    this.open++;
    this.taken++;
    let closed = false;
    const close = (): void => {
      if (!closed) this.open--;
      closed = true;
      inner.close();
    };
    return {
      storeFormat: inner.storeFormat,
      progress: inner.progress,
      keys: inner.keys,
      entries: () => inner.entries(),
      close,
      [Symbol.dispose]: close,
    };
  }
}

/** Values large enough that the snapshot outgrows every buffer between the node and a client not reading. */
const KEYS = 1600;
const VALUE = Buffer.alloc(10 * 1024, 'v');

describe('the Snapshot RPC, in process', () => {
  let node: ServiceNode<Replica>;
  let store: CountedStore;
  let service: KvService;
  let api: GrpcApi;
  let client: Kvs2Client;
  let address: string;

  before(async () => {
    node = await startLiveNode();
    store = new CountedStore(node.store);
    service = new KvService({
      log: node.log,
      conditional: new ConditionalWrites({
        log: node.log,
        applied: node.replica.watermark,
        feed: node.replica.changes,
        store: node.store,
      }),
      store,
      applied: node.replica.watermark,
      changes: { feed: node.replica.changes, history: node.log },
      limits: node.limits,
      maxReplyBytesInFlight: 256 * 1024 * 1024,
    });
    const health = new NodeHealth({ progress: node.replica.progress, maxReadyLag: 0 });
    api = new GrpcApi({
      service,
      status: new NodeStatusReport({
        version: KVS2_VERSION,
        logKind: 'embedded',
        logDescription: node.log.description,
        startedAtMs: Date.now(),
        health,
        progress: node.replica.progress,
        store: node.store,
        appliedToken: () => service.appliedToken(),
      }),
      health: new HealthService(health),
      limits: node.limits,
      maxRequestBytes: 8 * 1024 * 1024,
      requestTimeoutMs: 10_000,
    });
    address = `127.0.0.1:${await api.listen('127.0.0.1', 0)}`;
    client = new Kvs2Client(address, { ownConnection: true });
    for (let batch = 0; batch < KEYS / 400; batch++) {
      const mutations = Array.from({ length: 400 }, (_, i) => ({
        key: b(`k/${String(batch * 400 + i).padStart(5, '0')}`),
        value: VALUE,
        delete: false,
      }));
      await service.write({ mutations, waitForApply: true }, noDeadline());
    }
  });
  /** The folders a store image copies the node's store into, that exist now. */
  const imageCopies = (): string[] => readdirSync(node.store.dir).filter((name) => name.startsWith('.store-image-'));

  after(async () => {
    client.close();
    await api.shutdown(0);
    await node.close();
  });

  test('the chunks are one whole snapshot of every key, and its read transaction is closed at the end', async () => {
    const checked = await verifySnapshot(client.snapshot());
    assert.equal(checked.keys, KEYS);
    assert.equal(checked.metadata.keys, KEYS);
    assert.deepEqual([store.open, api.openSnapshots], [0, 0]);
  });

  test('a paced snapshot is never sent faster than asked, and arrives whole', async () => {
    const bytesPerSecond = 8 * 1024 * 1024;
    const started = performance.now();
    let received = 0;
    const counted = (async function* () {
      for await (const chunk of client.snapshot({ maxBytesPerSecond: bytesPerSecond })) {
        received += chunk.length;
        yield chunk;
      }
    })();
    const checked = await verifySnapshot(counted);
    const elapsedMs = performance.now() - started;
    assert.equal(checked.keys, KEYS);
    // A lower bound only: the node may send slower (a busy machine), never faster. The last chunk is sent
    // once the bytes before it are due, so the whole takes at least (bytes - last chunk) / rate.
    const lastChunkAtMost = 1024 * 1024;
    assert.ok(received > 2 * lastChunkAtMost, `the snapshot is large enough to pace (${received} bytes)`);
    assert.ok(
      elapsedMs >= ((received - lastChunkAtMost) / bytesPerSecond) * 1000,
      `${received} bytes in ${elapsedMs.toFixed(0)} ms: faster than ${bytesPerSecond} bytes/s`,
    );
    assert.deepEqual([store.open, api.openSnapshots], [0, 0]);
  });

  test('a malformed request is INVALID_ARGUMENT, and no snapshot is taken', async () => {
    const taken = store.taken;
    const raw = await RawGrpcClient.connect(address);
    try {
      const reply = await raw.call('Snapshot', Buffer.of(END_GROUP_BYTE));
      assert.equal(reply.grpcStatus, status.INVALID_ARGUMENT);
      assert.equal(reply.metadata['kvs2-error-code'], 'INVALID_ARGUMENT');
      assert.deepEqual(reply.frames, []);
    } finally {
      await raw.close();
    }
    assert.equal(store.taken, taken);
  });

  test('a pace beyond 2^53 bytes/s, well-formed but not a safe JavaScript number, is INVALID_ARGUMENT', async () => {
    const taken = store.taken;
    const raw = await RawGrpcClient.connect(address);
    try {
      // Field 1, varint 2^63.
      const body = Buffer.of(0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01);
      const reply = await raw.call('Snapshot', body);
      assert.equal(reply.grpcStatus, status.INVALID_ARGUMENT, reply.grpcMessage);
      assert.equal(reply.metadata['kvs2-error-code'], 'INVALID_ARGUMENT');
      assert.match(reply.grpcMessage, /MAX_SAFE_INTEGER/);
    } finally {
      await raw.close();
    }
    assert.equal(store.taken, taken);
  });

  test('a pace below 64 KiB/s is INVALID_ARGUMENT, and no snapshot is taken', async () => {
    const taken = store.taken;
    await assert.rejects(
      (async () => {
        for await (const _ of client.snapshot({ maxBytesPerSecond: 65_535 })) assert.fail('no chunk');
      })(),
      (error: unknown) => {
        assert.ok(error instanceof Kvs2ClientError);
        assert.equal(error.kvs2Code, 'INVALID_ARGUMENT');
        assert.match(error.details, /max_bytes_per_second 65535 is below 65536/);
        return true;
      },
    );
    assert.equal(store.taken, taken);
  });

  test('a client that stops reading half-way: the stream ends on the node and the transaction is closed', async () => {
    const taken = store.taken;
    const chunks = client.snapshot()[Symbol.asyncIterator]();
    assert.equal((await chunks.next()).done, false);
    assert.deepEqual([store.open, api.openSnapshots], [1, 1]);
    // Reads go on while the snapshot is open.
    assert.deepEqual((await client.get({ key: b('k/00007') })).data, VALUE);
    await chunks.return?.();
    await eventually(() => store.open === 0 && api.openSnapshots === 0, 10_000, 'the snapshot to be closed');
    assert.equal(store.taken, taken + 1);
    // And the node goes on: another snapshot is whole.
    assert.equal((await verifySnapshot(client.snapshot())).keys, KEYS);
    assert.equal(store.open, 0);
  });

  test('a snapshot with a deadline that passes mid-stream: DEADLINE_EXCEEDED, the transaction closed', async () => {
    const chunks = client.snapshot({ timeoutMs: 300 })[Symbol.asyncIterator]();
    assert.equal((await chunks.next()).done, false);
    // Not reading: the node's stream waits on flow control until the deadline ends it.
    await eventually(() => store.open === 0 && api.openSnapshots === 0, 10_000, 'the deadline to end the snapshot');
    const error = await drain(chunks);
    assert.equal(error.kvs2Code, 'GRPC_DEADLINE_EXCEEDED');
  });

  test('a judgment that comes only after the file streamed in: nothing is installed before it; a late refusal leaves nothing', async () => {
    for (const verdict of ['refuse', 'accept'] as const) {
      const target = await tempDir('image-judged-late');
      try {
        const judgment = Promise.withResolvers<void>();
        const pendingWhileStreaming: boolean[] = [];
        // The whole image arrives, and only then the log's facts judge it (a node whose log opened late).
        const thenJudge = async function* (chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
          yield* chunks;
          pendingWhileStreaming.push(existsSync(join(target.path, 'store')));
          if (verdict === 'refuse') judgment.reject(new Error('refused once the log answered'));
          else judgment.resolve();
        };
        const installing = installStoreImage(thenJudge(client.snapshot({ format: 'store-image' })), {
          dataDir: target.path,
          accept: () => judgment.promise,
        });
        if (verdict === 'refuse') {
          await assert.rejects(installing, /refused once the log answered/);
          assert.deepEqual(readdirSync(target.path), [], 'no store and no staging folder');
        } else {
          assert.equal((await installing).metadata.keys, KEYS);
          assert.deepEqual(readdirSync(target.path), ['store']);
        }
        assert.deepEqual(pendingWhileStreaming, [false], 'nothing was installed while the judgment was pending');
      } finally {
        await target.remove();
      }
    }
  });

  test('a store image installs as a store holding every key at the node’s offsets; its copy is removed', async () => {
    const copies = store.copies;
    const target = await tempDir('image-install');
    try {
      const sniffed = await sniffSnapshot(client.snapshot({ format: 'store-image' }));
      assert.equal(sniffed.format, 'store-image');
      let accepted = 0;
      const installed = await installStoreImage(sniffed.chunks, {
        dataDir: target.path,
        accept: () => {
          accepted++;
        },
      });
      assert.equal(accepted, 1);
      assert.equal(installed.metadata.keys, KEYS);
      assert.notEqual(installed.metadata.caughtUpAt, null, 'a caught-up node dates its image');
      assert.deepEqual(readdirSync(target.path), ['store'], 'no staging folder is left');
      const copy = LmdbStore.open(join(target.path, 'store'));
      try {
        assert.equal(copy.stats().keys, KEYS);
        assert.deepEqual(node.store.get(b('k/00007')), VALUE);
        const version = node.store.lastVersion;
        assert.deepEqual(copy.get(b('k/00007')), VALUE);
        assert.equal(copy.lastVersion, version, 'the key keeps its version');
        assert.deepEqual(copy.progress().appliedOffsets, node.store.progress().appliedOffsets);
        assert.equal(copy.progress().caughtUpAt, installed.metadata.caughtUpAt);
      } finally {
        await copy.close();
      }
    } finally {
      await target.remove();
    }
    assert.equal(store.copies, copies + 1);
    assert.deepEqual(imageCopies(), []);
    // A portable snapshot is still what a client gets by default.
    const portable = await sniffSnapshot(client.snapshot());
    assert.equal(portable.format, 'portable');
    await portable.chunks[Symbol.asyncIterator]().return?.();
    await eventually(() => api.openSnapshots === 0 && store.open === 0, 10_000, 'the unread stream to end');
  });

  test('a store image damaged, cut short or followed by bytes is refused, and nothing is installed', async () => {
    const image: Buffer[] = [];
    for await (const chunk of client.snapshot({ format: 'store-image' })) image.push(chunk);
    const whole = Buffer.concat(image);
    const flipped = Buffer.from(whole);
    const at = Math.floor(flipped.length / 2);
    flipped[at] = (flipped[at] as number) ^ 0x01;
    const cases: Array<[string, Buffer, RegExp]> = [
      ['a flipped bit', flipped, /its CRC-32 does not match its content/],
      ['cut at half', whole.subarray(0, at), /it ends after \d+ of the file's \d+ bytes, without its trailer/],
      ['cut inside its trailer', whole.subarray(0, whole.length - 3), /it ends inside its trailer/],
      ['bytes after it', Buffer.concat([whole, Buffer.from('x')]), /bytes follow its trailer/],
    ];
    for (const [name, bytes, why] of cases) {
      const target = await tempDir('image-refused');
      try {
        await assert.rejects(
          installStoreImage(pieces(bytes), { dataDir: target.path, accept: () => {} }),
          (error: Error & { code?: string }) => {
            assert.equal(error.code, 'SNAPSHOT_INVALID', `${name}: ${error.message}`);
            assert.match(error.message, why, name);
            return true;
          },
        );
        assert.deepEqual(readdirSync(target.path), [], `${name}: nothing is left in the data dir`);
        assert.equal(existsSync(join(target.path, 'store', 'data.mdb')), false);
      } finally {
        await target.remove();
      }
    }
    await eventually(() => api.openSnapshots === 0 && imageCopies().length === 0, 10_000, 'the stream to end');
  });

  test('a client that stops reading a store image half-way: the stream ends and the copy is removed', async () => {
    const chunks = client.snapshot({ format: 'store-image' })[Symbol.asyncIterator]();
    assert.equal((await chunks.next()).done, false);
    assert.equal(api.openSnapshots, 1);
    assert.equal(imageCopies().length, 1, 'the copy exists while the image streams');
    await chunks.return?.();
    await eventually(() => api.openSnapshots === 0 && imageCopies().length === 0, 10_000, 'the copy to be removed');
  });

  test('shutdown ends an open snapshot stream with UNAVAILABLE and SHUTTING_DOWN, closing its transaction', async () => {
    const chunks = client.snapshot()[Symbol.asyncIterator]();
    assert.equal((await chunks.next()).done, false);
    assert.equal(api.openSnapshots, 1);
    assert.equal(await api.shutdown(5000), true);
    assert.deepEqual([store.open, api.openSnapshots], [0, 0]);
    const error = await drain(chunks);
    assert.deepEqual([error.code, error.kvs2Code], [status.UNAVAILABLE, 'SHUTTING_DOWN']);
  });
});

/** Chunks of 64 KiB, as a stream brings them. */
async function* pieces(bytes: Buffer): AsyncGenerator<Buffer> {
  for (let at = 0; at < bytes.length; at += 64 * 1024) yield bytes.subarray(at, at + 64 * 1024);
}

/** Reads the rest of a stream that must fail, and returns its failure. */
async function drain(chunks: AsyncIterator<Buffer>): Promise<Kvs2ClientError> {
  try {
    while (!(await chunks.next()).done);
  } catch (error) {
    assert.ok(error instanceof Kvs2ClientError, String(error));
    return error;
  }
  assert.fail('the stream ended whole');
}
