import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Kvs2Client } from '../../src/client/index.js';
import { runKvs2 } from '../support/cli-process.js';
import { eventually } from '../support/grpc-clients.js';
import { kafkaBrokers, needsKafka } from '../support/kafka-env.js';
import { tempDir } from '../support/paths.js';
import { PlainKafka } from '../support/plain-kafka.js';
import { httpGet } from '../support/prometheus-text.js';
import { ServerProcess } from '../support/server-process.js';
import { SilentPeer, SnapshotPeer } from '../support/snapshot-peer.js';

const b = (text: string): Buffer => Buffer.from(text);
const KEYS = 2_000;
const keyOf = (i: number): Buffer => b(`key-${String(i).padStart(5, '0')}`);
const valueFor = (i: number, round = 0): Buffer => b(`value ${i} of round ${round} `.padEnd(100, '.'));

/** A loopback port nothing listens on now (the node is given it for its metrics listener). */
async function unusedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/** --bootstrap-from on a real Kafka topic: a new node loads a peer's snapshot, then reads only what followed. */
describe('a new node bootstrapping from a peer', needsKafka(), () => {
  let brokers: string;
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let plain: PlainKafka;
  const running: ServerProcess[] = [];
  const clients: Kvs2Client[] = [];
  const peers: Array<SnapshotPeer | SilentPeer> = [];

  const startNode = async (name: string, topic: string, extra: readonly string[] = []): Promise<ServerProcess> => {
    const node = await ServerProcess.start({
      dataDir: `${dir.path}/${name}`,
      args: ['--kafka-brokers', brokers, '--topic', topic, '--partitions', '3', ...extra],
    });
    running.push(node);
    return node;
  };
  const client = (node: ServerProcess): Kvs2Client => {
    const c = new Kvs2Client(node.address);
    clients.push(c);
    return c;
  };
  /** Every key of the dataset with its value in `round`, or missing where `deleted` says so, after `token`. */
  const holdsDataset = async (node: ServerProcess, token: Buffer, deleted: (i: number) => boolean, round = 0) => {
    const keys = Array.from({ length: KEYS }, (_, i) => keyOf(i));
    const reply = await client(node).multiGet({ keys, after: [token] });
    reply.parts.forEach((part, i) => {
      if (deleted(i)) assert.equal(part.status, 1, `key ${i} is deleted`);
      else assert.equal(part.data.toString(), valueFor(i, round).toString(), `key ${i}`);
    });
  };
  /** A peer on `topic` holding the dataset (every 7th key deleted), caught up; returns it and its last token. */
  const peerWithDataset = async (name: string, topic: string) => {
    const peer = await startNode(name, topic);
    await peer.waitUntilCaughtUp(30_000);
    const writer = client(peer);
    let token: Buffer = Buffer.alloc(0);
    for (let i = 0; i < KEYS; i += 100) {
      const mutations = Array.from({ length: 100 }, (_, j) => ({
        key: keyOf(i + j),
        value: valueFor(i + j),
        delete: false,
      }));
      token = (await writer.write({ mutations })).token;
    }
    for (let i = 0; i < KEYS; i += 7) token = (await writer.delete({ key: keyOf(i) })).token;
    await writer.get({ key: keyOf(1), after: [token] });
    return { peer, token };
  };
  const deletedEvery7th = (i: number): boolean => i % 7 === 0;
  /** Every key of the dataset has the same version on `node` as on `source`. */
  const sameVersions = async (node: ServerProcess, source: ServerProcess, token: Buffer) => {
    const keys = Array.from({ length: KEYS }, (_, i) => keyOf(i));
    const [mine, theirs] = await Promise.all(
      [node, source].map(async (n) => (await client(n).multiGet({ keys, after: [token] })).parts.map((p) => p.version)),
    );
    assert.deepEqual(mine, theirs);
    assert.ok((mine as number[]).some((version) => version > 0));
  };
  /** A store image of `node`, as --bootstrap-from asks for it. */
  const imageOf = async (node: ServerProcess): Promise<Buffer> => {
    const parts: Buffer[] = [];
    for await (const chunk of client(node).snapshot({ format: 'store-image' })) parts.push(chunk);
    return Buffer.concat(parts);
  };
  /** Temporary files a snapshot left in a data dir: staging folders of a receiver, copies of a sender. */
  const leftovers = (name: string): string[] => {
    const dataDir = `${dir.path}/${name}`;
    const storeDir = `${dataDir}/store`;
    return [
      ...readdirSync(dataDir).filter((entry) => entry.startsWith('.snapshot-')),
      ...(existsSync(storeDir) ? readdirSync(storeDir).filter((entry) => entry.startsWith('.store-image-')) : []),
    ];
  };

  before(async () => {
    brokers = kafkaBrokers().join(',');
    dir = await tempDir('peer-bootstrap');
    plain = new PlainKafka(brokers);
  });
  after(async () => {
    for (const c of clients) c.close();
    await Promise.all(running.map((node) => node.stop()));
    await Promise.all(peers.map((peer) => peer.close()));
    await plain.close();
    await dir.remove();
  });

  test('while it waits for a peer, a new node answers probes (live, not ready); when the peer fails it reads the topic', async () => {
    const topic = `kvs2-test-${randomUUID()}`;
    // A "peer" that accepts connections and never says a word: the bootstrap waits on it.
    const held = new Set<Socket>();
    const silent = createServer((socket) => {
      held.add(socket);
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const silentPort = (silent.address() as AddressInfo).port;
    const metricsPort = await unusedPort();
    const starting = startNode('probed-while-bootstrapping', topic, [
      '--bootstrap-from',
      `127.0.0.1:${silentPort}`,
      '--metrics-listen',
      `127.0.0.1:${metricsPort}`,
    ]);
    try {
      await eventually(
        async () => (await httpGet(metricsPort, '/livez').catch(() => null))?.status === 200,
        20_000,
        '/livez answering while the node waits for its peer',
      );
      await eventually(() => held.size > 0, 20_000, 'the node asking the silent peer for its store');
      assert.equal((await httpGet(metricsPort, '/livez')).status, 200);
      assert.deepEqual(await httpGet(metricsPort, '/readyz'), {
        status: 503,
        contentType: 'text/plain; charset=utf-8',
        body: 'starting\n',
      });
    } finally {
      for (const socket of held) socket.destroy();
      silent.close();
    }
    const node = await starting;
    await node.waitUntilCaughtUp(30_000);
    await eventually(async () => (await httpGet(metricsPort, '/readyz')).status === 200, 20_000, 'ready');
  });

  test('loads the peer’s snapshot, reads the topic only from its offsets on, and takes later writes', async () => {
    const topic = `kvs2-test-${randomUUID()}`;
    const { peer, token } = await peerWithDataset('source', topic);
    const fresh = await startNode('fresh', topic, ['--bootstrap-from', peer.address]);
    const loaded = await fresh.waitForLine((l) => l.msg.startsWith('bootstrapped from peer'), 60_000);
    assert.equal(loaded.peer, peer.address);
    assert.equal(loaded.format, 'store-image', 'a peer of this kvs2 sends its store’s file');
    assert.equal(loaded.transfer, 'direct', 'over a direct transfer beside the Snapshot call');
    assert.equal(loaded.keys, KEYS - Math.ceil(KEYS / 7));
    const loadedOffsets = loaded.appliedOffsets as Record<string, number>;
    const total = Object.values(loadedOffsets).reduce((sum, n) => sum + n, 0);
    assert.equal(
      total,
      KEYS + Math.ceil(KEYS / 7),
      'the snapshot covers every record written (a put per key, then the deletes)',
    );
    // The replica starts where the snapshot ends, not at the start of the topic.
    const starting = await fresh.waitForLine((l) => l.msg === 'replica starting');
    assert.deepEqual(starting.appliedOffsets, loadedOffsets);
    await fresh.waitUntilCaughtUp(30_000);
    await holdsDataset(fresh, token, deletedEvery7th);
    await sameVersions(fresh, peer, token);
    assert.deepEqual(leftovers('fresh'), [], 'the receiver’s staging folder is gone');
    await eventually(async () => leftovers('source').length === 0, 10_000, 'the peer to remove its copy');

    // Later writes, through either node, reach both.
    const later = await client(peer).set({ key: b('after-bootstrap'), value: b('from the source') });
    const back = await client(fresh).set({ key: b('written-on-fresh'), value: b('from the new node') });
    for (const node of [peer, fresh]) {
      const c = client(node);
      assert.equal(
        (await c.get({ key: b('after-bootstrap'), after: [later.token] })).data.toString(),
        'from the source',
      );
      assert.equal(
        (await c.get({ key: b('written-on-fresh'), after: [back.token] })).data.toString(),
        'from the new node',
      );
    }
    // A restart resumes from its own store: no second bootstrap.
    assert.equal((await fresh.stop()).code, 0);
    const again = await startNode('fresh', topic, ['--bootstrap-from', peer.address]);
    await again.waitUntilCaughtUp(30_000);
    assert.ok(!again.lines.some((l) => l.msg.startsWith('bootstrapping from peer')), 'no bootstrap on restart');
    await holdsDataset(again, token, deletedEvery7th);
  });

  test('a peer that dies mid-stream leaves nothing behind; the next peer is tried; with none left the topic is read from the start', async () => {
    const topic = `kvs2-test-${randomUUID()}`;
    const { peer, token } = await peerWithDataset('whole', topic);
    // A snapshot of the same store, as a stopped node's file, served cut short by a peer that then dies.
    assert.equal((await peer.stop()).code, 0);
    const file = `${dir.path}/whole.snapshot`;
    const saved = await runKvs2(['snapshot', 'save', file, '--data-dir', `${dir.path}/whole`]);
    assert.equal(saved.code, 0, saved.stderr);
    const bytes = await readFile(file);
    const dying = await SnapshotPeer.start(bytes, { cutAfterBytes: Math.floor(bytes.length / 2) });
    peers.push(dying);
    const restarted = await startNode('whole', topic);
    await restarted.waitUntilCaughtUp(30_000);

    const second = await startNode('second-peer', topic, ['--bootstrap-from', `${dying.address},${restarted.address}`]);
    const failed = await second.waitForLine(
      (l) => l.msg.startsWith(`bootstrap from peer ${dying.address} failed`),
      60_000,
    );
    assert.match(failed.msg, /the store is empty again/);
    const loaded = await second.waitForLine((l) => l.msg.startsWith('bootstrapped from peer'), 60_000);
    assert.equal(loaded.peer, restarted.address);
    await second.waitUntilCaughtUp(30_000);
    await holdsDataset(second, token, deletedEvery7th);

    const alone = await startNode('no-peer-left', topic, ['--bootstrap-from', dying.address]);
    await alone.waitForLine((l) => l.msg.startsWith('no peer gave a usable snapshot'), 60_000);
    const starting = await alone.waitForLine((l) => l.msg === 'replica starting');
    assert.deepEqual(starting.appliedOffsets, {}, 'the topic is read from its start');
    await alone.waitUntilCaughtUp(30_000);
    await holdsDataset(alone, token, deletedEvery7th);
    assert.equal(dying.calls, 2);
  });

  test('a peer that goes silent (before its first byte, or mid-image streamed or direct) is given up after --bootstrap-stall-timeout-ms; the next peer is used; with none left, the topic', async () => {
    const topic = `kvs2-test-${randomUUID()}`;
    const { peer, token } = await peerWithDataset('stall-source', topic);
    const image = await imageOf(peer);
    const half = Math.floor(image.length / 2);
    const silent = await SilentPeer.start();
    const stalledStream = await SnapshotPeer.start(image, { stallAfterBytes: half });
    const stalledDirect = await SnapshotPeer.start(image, { direct: 'serve', stallAfterBytes: half });
    peers.push(silent, stalledStream, stalledDirect);
    const stallArgs = ['--bootstrap-stall-timeout-ms', '1000'];

    const node = await startNode('after-stalled-peers', topic, [
      '--bootstrap-from',
      `${silent.address},${stalledStream.address},${stalledDirect.address},${peer.address}`,
      ...stallArgs,
    ]);
    const gaveUp = async (address: string, why: RegExp) => {
      const line = await node.waitForLine((l) => l.msg.startsWith(`bootstrap from peer ${address} failed`));
      assert.match(line.msg, why, address);
    };
    await gaveUp(silent.address, /the node sent nothing for 1000 ms before its first byte/);
    await gaveUp(stalledStream.address, /the node sent nothing for 1000 ms after \d+ bytes/);
    await gaveUp(stalledDirect.address, /the node sent nothing for 1000 ms after \d+ bytes/);
    const loaded = await node.waitForLine((l) => l.msg.startsWith('bootstrapped from peer'), 60_000);
    assert.deepEqual([loaded.peer, loaded.format, loaded.transfer], [peer.address, 'store-image', 'direct']);
    await node.waitUntilCaughtUp(30_000);
    await holdsDataset(node, token, deletedEvery7th);
    assert.deepEqual(leftovers('after-stalled-peers'), []);
    assert.deepEqual([stalledStream.calls, stalledDirect.calls], [1, 1]);

    const alone = await startNode('only-stalled-peers', topic, [
      '--bootstrap-from',
      `${silent.address},${stalledDirect.address}`,
      ...stallArgs,
    ]);
    await alone.waitForLine((l) => l.msg.startsWith('no peer gave a usable snapshot'), 60_000);
    const starting = await alone.waitForLine((l) => l.msg === 'replica starting');
    assert.deepEqual(starting.appliedOffsets, {}, 'the topic is read from its start');
    await alone.waitUntilCaughtUp(30_000);
    await holdsDataset(alone, token, deletedEvery7th);
    assert.deepEqual(leftovers('only-stalled-peers'), []);
  });

  test('a real peer killed mid-transfer: the new node reads the topic instead and holds every key', async (t) => {
    const topic = `kvs2-test-${randomUUID()}`;
    const big = await startNode('big-peer', topic);
    await big.waitUntilCaughtUp(30_000);
    // ~128 MiB of store image: the transfer lasts far longer than the kill takes to land once it has begun.
    const BIG_KEYS = 2_000;
    const bigValue = (i: number): Buffer => Buffer.alloc(64 * 1024, `value ${i} `);
    const writer = client(big);
    let token: Buffer = Buffer.alloc(0);
    for (let i = 0; i < BIG_KEYS; i += 20) {
      const mutations = Array.from({ length: 20 }, (_, j) => ({
        key: keyOf(i + j),
        value: bigValue(i + j),
        delete: false,
      }));
      token = (await writer.write({ mutations })).token;
    }
    await writer.get({ key: keyOf(0), after: [token] });

    const node = ServerProcess.launch({
      dataDir: `${dir.path}/after-killed-peer`,
      args: ['--kafka-brokers', brokers, '--topic', topic, '--partitions', '3', '--bootstrap-from', big.address],
    });
    running.push(node);
    // The image's first bytes have arrived: the peer is mid-transfer.
    const receiving = await node.waitForLine(
      (l) => l.msg.startsWith(`receiving a store image from peer ${big.address}`),
      60_000,
    );
    const killed = await big.kill9();
    assert.equal(killed.signal, 'SIGKILL');
    assert.equal(receiving.transfer, 'direct');
    assert.ok((receiving.bytes as number) > 100 * 1024 * 1024, `an image of ${String(receiving.bytes)} bytes`);
    const failed = await node.waitForLine((l) => l.msg.startsWith(`bootstrap from peer ${big.address} failed`), 60_000);
    // How far it got (the image ends short, or its socket broke) says where the kill landed.
    t.diagnostic(failed.msg);
    const got = /(?:it ends after|the direct transfer (?:ended|broke) after) (\d+)/.exec(failed.msg);
    assert.ok(got !== null, failed.msg);
    assert.ok(Number(got[1]) < (receiving.bytes as number), `killed mid-transfer: ${failed.msg}`);
    await node.waitForLine((l) => l.msg.startsWith('no peer gave a usable snapshot'), 60_000);
    assert.ok(!node.lines.some((l) => l.msg.startsWith('bootstrapped from peer')), 'nothing installed');
    await node.listening(60_000);
    const starting = await node.waitForLine((l) => l.msg === 'replica starting');
    assert.deepEqual(starting.appliedOffsets, {}, 'the topic is read from its start');
    await node.waitUntilCaughtUp(120_000);
    assert.deepEqual(leftovers('after-killed-peer'), []);
    const reader = client(node);
    for (let i = 0; i < BIG_KEYS; i += 100) {
      const keys = Array.from({ length: 100 }, (_, j) => keyOf(i + j));
      const reply = await reader.multiGet({ keys, after: [token] });
      reply.parts.forEach((part, j) => {
        assert.ok(part.data.equals(bigValue(i + j)), `key ${i + j}`);
      });
    }
  });

  test('a damaged or cut-short store image is refused and the next peer is used; a peer before store images still serves its portable snapshot', async () => {
    const topic = `kvs2-test-${randomUUID()}`;
    const { peer, token } = await peerWithDataset('imaged', topic);
    const image = await imageOf(peer);
    assert.equal(image.subarray(0, 8).toString('latin1'), 'KVS2IMAG');
    const flipped = Buffer.from(image);
    const middle = Math.floor(image.length / 2);
    flipped[middle] = (flipped[middle] as number) ^ 0x01;
    const damaged = await SnapshotPeer.start(flipped);
    const dying = await SnapshotPeer.start(image, { cutAfterBytes: middle });
    // The same, over a direct transfer: its socket closes half-way and its call fails.
    const dyingDirect = await SnapshotPeer.start(image, { cutAfterBytes: middle, direct: 'serve' });
    peers.push(damaged, dying, dyingDirect);

    const node = await startNode('after-bad-images', topic, [
      '--bootstrap-from',
      `${damaged.address},${dying.address},${dyingDirect.address},${peer.address}`,
    ]);
    const refused = await node.waitForLine((l) => l.msg.startsWith(`bootstrap from peer ${damaged.address} failed`));
    assert.match(refused.msg, /its CRC-32 does not match its content/);
    await node.waitForLine((l) => l.msg.startsWith(`bootstrap from peer ${dying.address} failed`));
    await node.waitForLine((l) => l.msg.startsWith(`bootstrap from peer ${dyingDirect.address} failed`));
    const loaded = await node.waitForLine((l) => l.msg.startsWith('bootstrapped from peer'), 60_000);
    assert.deepEqual([loaded.peer, loaded.format, loaded.transfer], [peer.address, 'store-image', 'direct']);
    await node.waitUntilCaughtUp(30_000);
    await holdsDataset(node, token, deletedEvery7th);
    await sameVersions(node, peer, token);
    assert.deepEqual(leftovers('after-bad-images'), []);
    assert.deepEqual([damaged.calls, dying.calls, dyingDirect.calls], [1, 1, 1]);

    // A peer of a kvs2 before store images ignores the format asked for and sends the portable snapshot.
    const portable: Buffer[] = [];
    for await (const chunk of client(peer).snapshot()) portable.push(chunk);
    const older = await SnapshotPeer.start(Buffer.concat(portable));
    peers.push(older);
    const fromOlder = await startNode('from-older-peer', topic, ['--bootstrap-from', older.address]);
    const loadedOld = await fromOlder.waitForLine((l) => l.msg.startsWith('bootstrapped from peer'), 60_000);
    assert.deepEqual([loadedOld.peer, loadedOld.format], [older.address, 'portable']);
    assert.equal(loadedOld.keys, KEYS - Math.ceil(KEYS / 7));
    await fromOlder.waitUntilCaughtUp(30_000);
    await holdsDataset(fromOlder, token, deletedEvery7th);
    await sameVersions(fromOlder, peer, token);
    assert.deepEqual(leftovers('from-older-peer'), []);
    await eventually(async () => leftovers('imaged').length === 0, 10_000, 'the peer to remove its copies');
  });

  test('a snapshot of another topic is refused, and so is one older than the topic’s delete.retention.ms', async () => {
    const topic = `kvs2-test-${randomUUID()}`;
    const { peer } = await peerWithDataset('other-topic', topic);
    const elsewhere = await startNode('elsewhere', `kvs2-test-${randomUUID()}`, ['--bootstrap-from', peer.address]);
    const refused = await elsewhere.waitForLine(
      (l) => l.msg.startsWith(`bootstrap from peer ${peer.address} failed`),
      60_000,
    );
    assert.match(refused.msg, /it is a snapshot of log kafka:/);
    await elsewhere.waitForLine((l) => l.msg.startsWith('no peer gave a usable snapshot'));
    await elsewhere.waitUntilCaughtUp(30_000);

    // A stopped node's snapshot, served once the topic's tombstone retention has passed since it was caught up.
    const retained = `kvs2-test-${randomUUID()}`;
    await plain.createTopic(retained, 3, { 'cleanup.policy': 'compact', 'delete.retention.ms': '1000' });
    const old = await startNode('old', retained);
    await old.waitUntilCaughtUp(30_000);
    const { token } = await client(old).set({ key: b('k'), value: b('v') });
    await client(old).get({ key: b('k'), after: [token] });
    // Its store image too, dated when it was taken (the node was caught up then).
    const oldImage = await imageOf(old);
    const imageTakenAt = Date.now();
    assert.equal((await old.stop()).code, 0);
    const file = `${dir.path}/old.snapshot`;
    const saved = await runKvs2(['snapshot', 'save', file, '--data-dir', `${dir.path}/old`]);
    assert.equal(saved.code, 0, saved.stderr);
    const stale = await SnapshotPeer.start(await readFile(file));
    peers.push(stale);
    const inspected = JSON.parse((await runKvs2(['snapshot', 'inspect', file, '-o', 'json'])).stdout.toString());
    const caughtUpAt = Date.parse(String(inspected.caughtUpAt));
    assert.ok(Number.isFinite(caughtUpAt), JSON.stringify(inspected));
    await eventually(async () => Date.now() - caughtUpAt > 1500, 10_000, 'the retention to pass');
    const late = await startNode('late', retained, ['--bootstrap-from', stale.address]);
    const tooOld = await late.waitForLine(
      (l) => l.msg.startsWith(`bootstrap from peer ${stale.address} failed`),
      60_000,
    );
    assert.match(tooOld.msg, /delete\.retention\.ms = 1000/);
    await late.waitUntilCaughtUp(30_000);
    assert.equal((await client(late).get({ key: b('k'), after: [token] })).data.toString(), 'v');

    // The store image, served as old: refused by the same rule, before its file is taken.
    const staleImage = await SnapshotPeer.start(oldImage);
    peers.push(staleImage);
    await eventually(async () => Date.now() - imageTakenAt > 1500, 10_000, 'the retention to pass');
    const lateToo = await startNode('late-image', retained, ['--bootstrap-from', staleImage.address]);
    const imageTooOld = await lateToo.waitForLine(
      (l) => l.msg.startsWith(`bootstrap from peer ${staleImage.address} failed`),
      60_000,
    );
    assert.match(imageTooOld.msg, /delete\.retention\.ms = 1000/);
    await lateToo.waitForLine((l) => l.msg.startsWith('no peer gave a usable snapshot'));
    await lateToo.waitUntilCaughtUp(30_000);
    assert.equal((await client(lateToo).get({ key: b('k'), after: [token] })).data.toString(), 'v');
    assert.deepEqual(leftovers('late-image'), []);
  });
});
