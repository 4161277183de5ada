import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { connect as connectNet, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect as connectTls } from 'node:tls';
import {
  type ChannelCredentials,
  type ClientOptions,
  credentials,
  Metadata,
  makeGenericClientConstructor,
  status,
} from '@grpc/grpc-js';
import { Kvs2Client, Kvs2ClientError } from '../../src/client/index.js';
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
import { ServerProcess } from '../support/server-process.js';
import { SilentPeer, SnapshotPeer } from '../support/snapshot-peer.js';
import { needsOpenssl, testCa } from '../support/tls-certificates.js';

const b = (text: string): Buffer => Buffer.from(text);
const KEYS = 3_000;

/** Writes KEYS keys through `client` and waits until the node applied them. */
async function fill(client: Kvs2Client): Promise<void> {
  for (let i = 0; i < KEYS; i += 500) {
    const mutations = Array.from({ length: 500 }, (_, j) => ({
      key: b(`key-${String(i + j).padStart(6, '0')}`),
      value: b(`value ${i + j} `.padEnd(200, '.')),
      delete: false,
    }));
    await client.write({ mutations, waitForApply: true });
  }
}

/** Fetches a node's store image with `client` (direct if it can) and installs it into a new data dir. */
async function fetchAndInstall(client: Kvs2Client, dataDir: string): Promise<{ keys: number; transfer: string[] }> {
  const transfer: string[] = [];
  const chunks = client.snapshot({ format: 'store-image', direct: true, onTransfer: (how) => transfer.push(how) });
  await installStoreImage(chunks, { dataDir, accept: () => {} });
  return { keys: (await readStoreFile(storeDirOf(dataDir))).keys, transfer };
}

/** The copies a node makes for store images, left in its store folder. */
function copiesIn(dataDir: string): string[] {
  const storeDir = storeDirOf(dataDir);
  return existsSync(storeDir) ? readdirSync(storeDir).filter((name) => name.startsWith('.store-image-')) : [];
}

/** The generated client, for the Snapshot call as it is on the wire (the ticket in its first message). */
const RawClient = makeGenericClientConstructor(Kvs2Service, 'kvs2.Kvs2') as unknown as new (
  address: string,
  creds: ChannelCredentials,
  options?: Partial<ClientOptions>,
) => GeneratedClient;

/** A Snapshot call asking for a direct transfer: its ticket, and the call's end (rejected when it fails). */
async function askDirect(
  raw: GeneratedClient,
): Promise<{ transfer: { port: number; ticket: Buffer }; ended: Promise<void> }> {
  const call = raw.snapshot(
    { maxBytesPerSecond: 0, format: SnapshotFormat.SNAPSHOT_FORMAT_STORE_IMAGE, directTransfer: true },
    new Metadata(),
  );
  const ended = new Promise<void>((resolve, reject) => {
    call.on('error', reject);
    call.on('end', resolve);
  });
  const first = await new Promise<SnapshotChunk>((resolve) => call.once('data', resolve));
  assert.equal(first.data.length, 0);
  assert.ok(first.directTransfer !== undefined, 'the first message hands out a direct transfer');
  return { transfer: first.directTransfer, ended };
}

/** Every byte a socket sends until it closes (an error ends it too: what arrived is returned). */
function drain(socket: Socket): Promise<Buffer> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    socket.on('data', (data: Buffer) => parts.push(data));
    socket.on('error', () => {});
    socket.on('close', () => resolve(Buffer.concat(parts)));
  });
}

describe('store images by direct transfer, against a real node', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let node: ServerProcess;
  let client: Kvs2Client;

  before(async () => {
    dir = await tempDir('direct-transfer');
    node = await ServerProcess.start({ dataDir: join(dir.path, 'node') });
    await node.waitUntilCaughtUp();
    client = new Kvs2Client(node.address);
    await fill(client);
  });
  after(async () => {
    client.close();
    assert.equal((await node.stop()).code, 0);
    await dir.remove();
  });

  test('the image comes over the direct transfer and installs whole; the node removes its copy', async () => {
    const fetched = await fetchAndInstall(client, join(dir.path, 'fetched'));
    assert.deepEqual(fetched, { keys: KEYS, transfer: ['direct'] });
    await eventually(() => copiesIn(join(dir.path, 'node')).length === 0, 10_000, 'the node to remove its copy');
  });

  test('a wrong ticket gets not a byte and leaves the right one good; the right one gets the image, once', async () => {
    const raw = new RawClient(node.address, credentials.createInsecure());
    try {
      const { transfer, ended } = await askDirect(raw);
      assert.equal(transfer.ticket.length, 32);

      const wrong = Buffer.from(transfer.ticket);
      wrong[0] = (wrong[0] as number) ^ 0x01;
      const intruder = connectNet(transfer.port, '127.0.0.1');
      intruder.write(wrong);
      assert.equal((await drain(intruder)).length, 0, 'a wrong ticket is dropped without a byte');

      const fetcher = connectNet(transfer.port, '127.0.0.1');
      fetcher.write(transfer.ticket);
      const image = await drain(fetcher);
      assert.equal(image.subarray(0, 8).toString('latin1'), 'KVS2IMAG');
      assert.equal(image.subarray(image.length - 20, image.length - 12).toString('latin1'), 'KVS2END.');
      await ended;

      // Used once: the port is closed.
      const again = connectNet(transfer.port, '127.0.0.1');
      again.write(transfer.ticket);
      assert.equal((await drain(again)).length, 0);
    } finally {
      raw.close();
    }
  });

  test('a transfer cut short is refused and leaves nothing behind; an unreachable one falls back to the stream', async () => {
    const image: Buffer[] = [];
    for await (const chunk of client.snapshot({ format: 'store-image' })) image.push(chunk);
    const whole = Buffer.concat(image);
    const cut = await SnapshotPeer.start(whole, { direct: 'serve', cutAfterBytes: Math.floor(whole.length / 2) });
    const unreachable = await SnapshotPeer.start(whole, { direct: 'unreachable' });
    const cutClient = new Kvs2Client(cut.address);
    const fallbackClient = new Kvs2Client(unreachable.address);
    try {
      const target = join(dir.path, 'from-cut');
      const error = await fetchAndInstall(cutClient, target).then(
        () => assert.fail('a cut transfer installed'),
        (e: unknown) => e,
      );
      assert.ok(error instanceof Kvs2ClientError || (error as Error).message.includes('not a whole'), String(error));
      assert.equal(existsSync(join(storeDirOf(target), 'data.mdb')), false);
      assert.deepEqual(
        readdirSync(target).filter((name) => name.startsWith('.snapshot-')),
        [],
        'the staging folder is gone',
      );

      const fetched = await fetchAndInstall(fallbackClient, join(dir.path, 'from-fallback'));
      assert.deepEqual(fetched, { keys: KEYS, transfer: ['stream'] });
      assert.equal(unreachable.calls, 2, 'asked again, as a stream');
    } finally {
      cutClient.close();
      fallbackClient.close();
      await cut.close();
      await unreachable.close();
    }
  });

  test('with a stall limit, a peer that goes silent (before its first byte or mid-image, streamed or direct) fails the snapshot DEADLINE_EXCEEDED', async () => {
    const image: Buffer[] = [];
    for await (const chunk of client.snapshot({ format: 'store-image' })) image.push(chunk);
    const whole = Buffer.concat(image);
    const half = Math.floor(whole.length / 2);
    const silent = await SilentPeer.start();
    const stalls: Array<[string, string, SnapshotPeer]> = [
      ['streamed, no first byte', 'before its first byte', await SnapshotPeer.start(whole, { stallAfterBytes: 0 })],
      ['streamed, mid-image', 'after', await SnapshotPeer.start(whole, { stallAfterBytes: half })],
      [
        'direct, no first byte',
        'before its first byte',
        await SnapshotPeer.start(whole, { direct: 'serve', stallAfterBytes: 0 }),
      ],
      ['direct, mid-image', 'after', await SnapshotPeer.start(whole, { direct: 'serve', stallAfterBytes: half })],
    ];
    const clients: Kvs2Client[] = [];
    const stalledFetch = async (address: string, expected: string, what: string): Promise<void> => {
      const peerClient = new Kvs2Client(address);
      clients.push(peerClient);
      const target = join(dir.path, `stalled-${clients.length}`);
      let received = 0;
      const chunks = peerClient.snapshot({ format: 'store-image', direct: true, stallTimeoutMs: 300 });
      const counted = (async function* () {
        for await (const chunk of chunks) {
          received += chunk.length;
          yield chunk;
        }
      })();
      const error = await installStoreImage(counted, { dataDir: target, accept: () => {} }).then(
        () => assert.fail(`${what}: a stalled snapshot installed`),
        (e: unknown) => e,
      );
      assert.ok(error instanceof Kvs2ClientError, `${what}: ${String(error)}`);
      assert.equal(error.kvs2Code, 'GRPC_DEADLINE_EXCEEDED', what);
      assert.match(error.details, /the node sent nothing for 300 ms/, what);
      assert.ok(error.details.includes(expected), `${what}: ${error.details}`);
      if (expected === 'after') assert.ok(received > 0 && received < whole.length, `${what}: ${received}`);
      assert.equal(existsSync(join(storeDirOf(target), 'data.mdb')), false, what);
    };
    try {
      await stalledFetch(silent.address, 'before its first byte', 'a peer that accepts and sends nothing');
      assert.ok(silent.connections >= 1);
      for (const [what, expected, peer] of stalls) await stalledFetch(peer.address, expected, what);
      assert.deepEqual(
        stalls.map(([, , peer]) => peer.calls),
        [1, 1, 1, 1],
      );

      // A receiver that holds each chunk longer than the limit is no stall of the peer's.
      const slowReader = new Kvs2Client(node.address);
      clients.push(slowReader);
      const parts: Buffer[] = [];
      for await (const chunk of slowReader.snapshot({ format: 'store-image', direct: true, stallTimeoutMs: 100 })) {
        parts.push(chunk);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      assert.equal(Buffer.concat(parts).length, whole.length);
    } finally {
      for (const c of clients) c.close();
      await silent.close();
      await Promise.all(stalls.map(([, , peer]) => peer.close()));
    }
  });
});

describe('a direct transfer under --auth-file', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let node: ServerProcess;
  const TOKENS = { admin: 'admin-secret-1', reader: 'reader-secret-2' } as const;

  before(async () => {
    dir = await tempDir('direct-transfer-auth');
    const hash = async (token: string): Promise<string> =>
      (await runKvs2(['auth', 'hash-token'], { input: `${token}\n` })).stdout.toString().trim();
    const authFile = join(dir.path, 'auth.json');
    await writeFile(
      authFile,
      JSON.stringify({
        tokens: { admin: await hash(TOKENS.admin), reader: await hash(TOKENS.reader) },
        permissions: {
          admin: [{ prefix: '', read: true, write: true, watch: true }],
          reader: [{ prefix: 'key-', read: true }],
        },
      }),
    );
    node = await ServerProcess.start({ dataDir: join(dir.path, 'node'), env: { KVS2_AUTH_FILE: authFile } });
    await node.waitUntilCaughtUp();
  });
  after(async () => {
    assert.equal((await node.stop()).code, 0);
    await dir.remove();
  });

  test('a token without read on every key is refused before any ticket; one with it gets the image directly', async () => {
    const admin = new Kvs2Client(node.address, { token: TOKENS.admin });
    const reader = new Kvs2Client(node.address, { token: TOKENS.reader });
    try {
      await fill(admin);
      const target = join(dir.path, 'by-reader');
      const error = await fetchAndInstall(reader, target).then(
        () => assert.fail('a reader of key- only got the image'),
        (e: unknown) => e,
      );
      assert.ok(error instanceof Kvs2ClientError);
      assert.equal(error.code, status.PERMISSION_DENIED);
      assert.equal(copiesIn(join(dir.path, 'node')).length, 0, 'no copy was made for it');
      assert.deepEqual(await fetchAndInstall(admin, join(dir.path, 'by-admin')), { keys: KEYS, transfer: ['direct'] });
    } finally {
      admin.close();
      reader.close();
    }
  });
});

describe('a direct transfer from a node serving mutual TLS', needsOpenssl(), () => {
  test('over TLS with the client’s certificate; without one, or in plaintext, the port gives nothing', async () => {
    const dir = await tempDir('direct-transfer-tls');
    const ca = testCa(dir.path, 'ca');
    const served = ca.leaf('kvs2.test');
    const node = await ServerProcess.start({
      dataDir: join(dir.path, 'node'),
      args: ['--tls-cert', served.cert, '--tls-key', served.key, '--tls-client-ca', ca.cert],
    });
    const leaf = ca.leaf('client.test');
    const client = new Kvs2Client(node.address, { tls: { ca: ca.cert, serverName: 'kvs2.test', ...leaf } });
    const raw = new RawClient(
      node.address,
      credentials.createSsl(readFileSync(ca.cert), readFileSync(leaf.key), readFileSync(leaf.cert)),
      { 'grpc.ssl_target_name_override': 'kvs2.test' },
    );
    try {
      await node.waitUntilCaughtUp();
      await fill(client);
      assert.deepEqual(await fetchAndInstall(client, join(dir.path, 'fetched')), { keys: KEYS, transfer: ['direct'] });

      const { transfer, ended } = await askDirect(raw);
      const plaintext = connectNet(transfer.port, '127.0.0.1');
      plaintext.write(transfer.ticket);
      assert.equal((await drain(plaintext)).length, 0, 'a plaintext ticket gets nothing');
      const noCertificate = connectTls({
        port: transfer.port,
        host: '127.0.0.1',
        ca: readFileSync(ca.cert),
        servername: 'kvs2.test',
      });
      noCertificate.write(transfer.ticket);
      assert.equal((await drain(noCertificate)).length, 0, 'a client without a certificate gets nothing');
      const fetcher = connectTls({
        port: transfer.port,
        host: '127.0.0.1',
        ca: readFileSync(ca.cert),
        servername: 'kvs2.test',
        cert: readFileSync(leaf.cert),
        key: readFileSync(leaf.key),
      });
      fetcher.write(transfer.ticket);
      const image = await drain(fetcher);
      assert.equal(image.subarray(0, 8).toString('latin1'), 'KVS2IMAG');
      await ended;
    } finally {
      client.close();
      raw.close();
      await node.stop();
      await dir.remove();
    }
  });
});
