import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Kvs2Client } from '../../src/client/kvs2-client.js';
import { partitionForKey } from '../../src/log/kafka/murmur2-partitioner.js';
import {
  type Kvs2ColocatedReader,
  type Kvs2Replica,
  openColocatedReader,
  openReplica,
} from '../../src/replica-lib/index.js';
import { decodeToken, encodeToken, mergeTokens } from '../../src/service/consistency-token.js';
import { eventually } from '../support/grpc-clients.js';
import { kafkaBrokers, needsKafka } from '../support/kafka-env.js';
import { tempDir } from '../support/paths.js';
import {
  colocatedSurface,
  type Failure,
  FEATURES,
  failureOf,
  type ReadSurface,
  replicaSurface,
  type SurfaceChange,
  type SurfaceFeatures,
  serverSurface,
} from '../support/read-surfaces.js';
import { ServerProcess } from '../support/server-process.js';

/**
 * One conformance suite for every read surface (issue 17: "tokens, barriers and watches behave identically
 * through the library and the server"). Each scenario is written once and run against each surface, on one
 * real Kafka topic of several partitions: node A takes every write; the surfaces read what it wrote. Where a
 * surface lacks what a scenario needs, the test says so in its name and is not run there.
 */

const PARTITIONS = 3;
const b = (text: string): Buffer => Buffer.from(text);
const text = (value: Buffer | undefined): string | undefined => value?.toString();

type SurfaceId = keyof typeof FEATURES;
const SURFACES: ReadonlyArray<{ readonly id: SurfaceId; readonly name: string }> = [
  { id: 'server', name: 'the gRPC server (node B, through Kvs2Client)' },
  { id: 'replica', name: "the in-process replica on the application's thread (openReplica, applyOn: 'caller')" },
  { id: 'replica-worker', name: "the in-process replica on its worker thread (openReplica, applyOn: 'worker')" },
  { id: 'colocated', name: "the co-located reader (openColocatedReader on node B's data dir)" },
];

/** What a surface lacking a feature cannot do, for the names of the tests not run on it. */
const LACKING: Readonly<Record<keyof SurfaceFeatures, string>> = {
  readToken: 'gives no token for what it read (it has no token())',
  latest: 'has no read barrier (no equivalent of CONSISTENCY_LATEST)',
  watch: 'has no watch',
  cancel: 'cannot be cancelled with an AbortSignal (Kvs2Client takes a deadline only for unary calls)',
};

const DEADLINE: Failure = { status: 'DEADLINE_EXCEEDED', code: 'DEADLINE_EXCEEDED' };
const CANCELLED: Failure = { status: 'CANCELLED', code: 'CANCELLED' };
const OTHER_LOG: Failure = { status: 'FAILED_PRECONDITION', code: 'TOKEN_FROM_OTHER_LOG' };
const MALFORMED: Failure = { status: 'INVALID_ARGUMENT', code: 'INVALID_ARGUMENT' };

/** How a call failed; fails the test if it did not. */
async function failed(call: Promise<unknown>): Promise<Failure> {
  try {
    await call;
  } catch (error) {
    return failureOf(error);
  }
  return assert.fail('it did not fail');
}

/** The one partition a write's token names, and the offset after the write there. */
function positionOf(token: Buffer): { partition: number; next: number } {
  const offsets = [...decodeToken(token).offsets];
  assert.equal(offsets.length, 1, 'a Set or Delete token names one partition');
  const [[partition, next]] = offsets as [[number, number]];
  return { partition, next };
}

/** A token naming `more` records after the write `token` names, on its partition: a write not made yet. */
function laterToken(token: Buffer, more: number): Buffer {
  const { partition, next } = positionOf(token);
  return encodeToken(decodeToken(token).logTag, new Map([[partition, next + more]]));
}

/** `perPartition` keys under `prefix` on every partition of the topic, ordered by partition. */
function keysOnEveryPartition(prefix: string, perPartition = 1): Buffer[] {
  const found = new Map<number, Buffer[]>();
  for (let i = 0; [...found.values()].filter((keys) => keys.length >= perPartition).length < PARTITIONS; i++) {
    const key = b(`${prefix}${i}`);
    const keys = found.get(partitionForKey(key, PARTITIONS)) ?? [];
    if (keys.length < perPartition) keys.push(key);
    found.set(partitionForKey(key, PARTITIONS), keys);
  }
  return [...found].sort((x, y) => x[0] - y[0]).flatMap(([, keys]) => keys);
}

const numberOf = (value: Buffer | undefined): number => (value === undefined ? -1 : Number(value.toString()));

describe('every read surface on one Kafka topic, with the same scenarios', needsKafka(), () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  const nodes: ServerProcess[] = [];
  let writer: Kvs2Client;
  let nodeB: Kvs2Client;
  let replica: Kvs2Replica | undefined;
  let replicaOnWorker: Kvs2Replica | undefined;
  let reader: Kvs2ColocatedReader | undefined;
  /** A Set's token from a node on a log of its own: no surface here can wait for it. */
  let foreignToken: Buffer;
  const surfaces = new Map<SurfaceId, ReadSurface>();
  const surface = (id: SurfaceId): ReadSurface => {
    const found = surfaces.get(id);
    assert.ok(found, `${id} is open`);
    return found;
  };

  before(async () => {
    const brokers = kafkaBrokers();
    const topic = `kvs2-test-${randomUUID()}`;
    dir = await tempDir('read-surfaces');
    const kafka = ['--kafka-brokers', brokers.join(','), '--topic', topic, '--partitions', `${PARTITIONS}`];
    const [a, bNode, embedded] = await Promise.all([
      ServerProcess.start({ dataDir: join(dir.path, 'a'), args: kafka }),
      ServerProcess.start({ dataDir: join(dir.path, 'b'), args: kafka }),
      ServerProcess.start({ dataDir: join(dir.path, 'embedded') }),
    ]);
    nodes.push(a, bNode, embedded);
    await Promise.all(nodes.map((node) => node.waitUntilCaughtUp(60_000)));
    const other = new Kvs2Client(embedded.address);
    foreignToken = (await other.set({ key: b('elsewhere'), value: b('x') })).token;
    other.close();
    await embedded.stop();
    writer = new Kvs2Client(a.address);
    nodeB = new Kvs2Client(bNode.address);
    replica = await openReplica({ kafka: { brokers, topic }, dataDir: join(dir.path, 'replica'), applyOn: 'caller' });
    replicaOnWorker = await openReplica({
      kafka: { brokers, topic },
      dataDir: join(dir.path, 'replica-worker'),
      applyOn: 'worker',
    });
    await replica.whenCaughtUp(AbortSignal.timeout(60_000));
    await replicaOnWorker.whenCaughtUp(AbortSignal.timeout(60_000));
    reader = await openColocatedReader({ dataDir: join(dir.path, 'b') });
    surfaces.set('server', serverSurface('server', nodeB));
    surfaces.set('replica', replicaSurface('replica', replica));
    surfaces.set('replica-worker', replicaSurface('replica-worker', replicaOnWorker, FEATURES['replica-worker']));
    surfaces.set('colocated', colocatedSurface('colocated', reader));
  });
  after(async () => {
    await reader?.close();
    await replica?.close();
    await replicaOnWorker?.close();
    writer?.close();
    nodeB?.close();
    await Promise.all(nodes.map((node) => node.stop()));
    await dir?.remove();
  });

  for (const { id, name } of SURFACES) {
    describe(name, () => {
      /** A test of one scenario on this surface; not run, and named so, where the surface lacks `needs`. */
      const scenario = (title: string, needs: keyof SurfaceFeatures | null, run: (s: ReadSurface) => Promise<void>) => {
        const missing = needs !== null && !FEATURES[id][needs];
        const reason = missing ? `not run: ${id} ${LACKING[needs]}` : undefined;
        test(reason === undefined ? title : `${title} (${reason})`, { skip: reason ?? false }, () => run(surface(id)));
      };
      const key = (rest: string): Buffer => b(`${id}/${rest}`);

      scenario(
        'read-your-writes: each write through node A reads back with its token, round after round over keys on every partition; a delete reads as absent',
        null,
        async (s) => {
          const keys = keysOnEveryPartition(`${id}/ryw/`, 2);
          const latest = new Map<string, string | undefined>();
          let lastToken: Buffer = Buffer.alloc(0);
          for (let i = 0; i < 60; i++) {
            const k = keys[i % keys.length] as Buffer;
            const deleting = i % 9 === 8;
            const { token } = deleting
              ? await writer.delete({ key: k })
              : await writer.set({ key: k, value: b(`${i}`) });
            latest.set(k.toString(), deleting ? undefined : `${i}`);
            lastToken = token;
            // Read right after node A acknowledged: only the token makes the surface see it.
            assert.equal(text((await s.getAfter(k, [token])).value), latest.get(k.toString()), `round ${i}`);
          }
          const many = await s.getManyAfter(keys, [lastToken]);
          assert.deepEqual(
            many.values.map(text),
            keys.map((k) => latest.get(k.toString())),
          );
        },
      );

      scenario(
        'a token of a write not made yet makes the read wait, then answer that write (Get and MultiGet)',
        null,
        async (s) => {
          const k = key('wait/k');
          const first = await writer.set({ key: k, value: b('before') });
          assert.equal(text((await s.getAfter(k, [first.token])).value), 'before');
          const next = laterToken(first.token, 1);
          const waitingGet = s.getAfter(k, [next]);
          const waitingMany = s.getManyAfter([k, key('wait/absent')], [next]);
          // Neither may answer 'before': the surface holds it now, but the token names the next write.
          waitingGet.catch(() => {});
          waitingMany.catch(() => {});
          const second = await writer.set({ key: k, value: b('after') });
          assert.deepEqual(second.token, next, 'the token named this very write');
          assert.equal(text((await waitingGet).value), 'after');
          assert.deepEqual((await waitingMany).values.map(text), ['after', undefined]);
        },
      );

      scenario(
        'DEADLINE_EXCEEDED for a wait its deadline ends, and for a read whose deadline passed before it began (even for an applied token)',
        null,
        async (s) => {
          const k = key('deadline/k');
          const { token } = await writer.set({ key: k, value: b('v') });
          assert.equal(text((await s.getAfter(k, [token])).value), 'v');
          const far = laterToken(token, 1_000_000);
          assert.deepEqual(await failed(s.getAfter(k, [far], { timeoutMs: 300 })), DEADLINE);
          assert.deepEqual(await failed(s.getManyAfter([k], [token, far], { timeoutMs: 300 })), DEADLINE);
          assert.deepEqual(await failed(s.getAfter(k, [token], { timeoutMs: 0 })), DEADLINE);
          assert.deepEqual(await failed(s.getManyAfter([k], [token], { timeoutMs: 0 })), DEADLINE);
        },
      );

      scenario(
        'CANCELLED for a read cancelled before it began (even for an applied token) or while it waits',
        'cancel',
        async (s) => {
          const k = key('cancel/k');
          const { token } = await writer.set({ key: k, value: b('v') });
          assert.equal(text((await s.getAfter(k, [token])).value), 'v');
          const early = new AbortController();
          early.abort();
          assert.deepEqual(await failed(s.getAfter(k, [token], { signal: early.signal })), CANCELLED);
          assert.deepEqual(await failed(s.getManyAfter([k], [token], { signal: early.signal })), CANCELLED);
          const during = new AbortController();
          const waiting = failed(s.getAfter(k, [laterToken(token, 1_000_000)], { signal: during.signal }));
          during.abort();
          assert.deepEqual(await waiting, CANCELLED);
        },
      );

      scenario(
        'a token of another log is refused with TOKEN_FROM_OTHER_LOG, alone or beside a valid one; a malformed token with INVALID_ARGUMENT',
        null,
        async (s) => {
          const k = key('foreign/k');
          const { token } = await writer.set({ key: k, value: b('v') });
          assert.deepEqual(await failed(s.getAfter(k, [foreignToken])), OTHER_LOG);
          assert.deepEqual(await failed(s.getAfter(k, [token, foreignToken])), OTHER_LOG);
          assert.deepEqual(await failed(s.getManyAfter([k], [foreignToken, token])), OTHER_LOG);
          assert.deepEqual(await failed(s.getAfter(k, [b('not a token')])), MALFORMED);
          assert.deepEqual(await failed(s.getManyAfter([k], [token, token.subarray(0, 5)])), MALFORMED);
        },
      );

      scenario(
        'INVALID_ARGUMENT at once for no token at all, more than 1,000 tokens, or an empty key, even beside a token not applied yet',
        null,
        async (s) => {
          const k = key('invalid/k');
          const { token } = await writer.set({ key: k, value: b('v') });
          const far = laterToken(token, 1_000_000);
          // Bounded well past the 300 ms waits above: a surface that waits instead of refusing ends in DEADLINE_EXCEEDED.
          const bound = { timeoutMs: 5_000 };
          assert.deepEqual(await failed(s.getAfter(k, [], bound)), MALFORMED);
          assert.deepEqual(await failed(s.getManyAfter([k], [], bound)), MALFORMED);
          assert.deepEqual(await failed(s.getAfter(Buffer.alloc(0), [token], bound)), MALFORMED);
          assert.deepEqual(await failed(s.getAfter(Buffer.alloc(0), [far], bound)), MALFORMED);
          assert.deepEqual(await failed(s.getManyAfter([k, Buffer.alloc(0)], [far], bound)), MALFORMED);
          // At most 1,000 tokens a call (README, "Limits and bad input").
          assert.deepEqual(await failed(s.getAfter(k, new Array<Buffer>(1_001).fill(token), bound)), MALFORMED);
        },
      );

      const others = SURFACES.filter((other) => other.id !== id);
      scenario(
        `monotonic reads: the token of a read here, handed to ${others.map((o) => o.id).join(' and ')}, never reads an older value, while node A keeps writing`,
        'readToken',
        async (s) => {
          await handOverWhileWriting(
            key('monotonic-out/k'),
            [s],
            others.map((o) => surface(o.id)),
          );
        },
      );

      const producers = others.filter((other) => FEATURES[other.id].readToken);
      scenario(
        `monotonic reads: the token of a read on ${producers.map((o) => o.id).join(' and ')}, handed here, never reads an older value, while node A keeps writing`,
        null,
        async (s) => {
          await handOverWhileWriting(
            key('monotonic-in/k'),
            producers.map((o) => surface(o.id)),
            [s],
          );
        },
      );

      scenario('a LATEST read sees every write acknowledged before it began, without a token', 'latest', async (s) => {
        const k = key('latest/k');
        for (let i = 0; i < 30; i++) {
          await writer.set({ key: k, value: b(`${i}`) });
          assert.equal(text((await s.getLatest(k)).value), `${i}`, `round ${i}`);
        }
      });

      scenario(
        'a watch delivers the puts and deletes in log order per partition, each with a token naming its write; nothing outside its prefix',
        'watch',
        async (s) => {
          const prefix = `${id}/watch/`;
          const watch = await s.watch(b(prefix));
          try {
            const ops = await applyOps(keysOnEveryPartition(prefix));
            await writer.set({ key: key('not-watched'), value: b('x') });
            await eventually(() => watch.changes.length >= ops.length, 30_000, 'every change');
            assertSameChanges(watch.changes, ops);
            assert.deepEqual(watch.failures, []);
          } finally {
            watch.stop();
          }
        },
      );

      scenario(
        "a watch resumed from an event's token delivers every later change once; from a write's token, that partition's later changes, then live ones",
        'watch',
        async (s) => {
          const prefix = `${id}/resume/`;
          const keys = keysOnEveryPartition(prefix);
          const first = await s.watch(b(prefix));
          const ops = await applyOps(keys);
          await eventually(() => first.changes.length >= ops.length, 30_000, 'every change');
          first.stop();
          assertSameChanges(first.changes, ops);

          // From the token of the fifth event delivered: what the token leaves behind, on every partition.
          const from = (first.changes[4] as SurfaceChange).token;
          const covered = decodeToken(from).offsets;
          const resumed = await s.watch(b(prefix), from);
          // From a Delete's token: its partition replays what followed it; the others start now.
          const deletion = ops.find((op) => op.value === undefined) as Op;
          const fromWrite = await s.watch(b(prefix), deletion.token);
          try {
            const live = await applyOps(keys, 'live');
            const afterEvent = ops.filter((op) => op.next > (covered.get(op.partition) ?? 0));
            assert.ok(afterEvent.length > 0 && afterEvent.length < ops.length, 'the token is mid-way');
            const afterWrite = ops.filter((op) => op.partition === deletion.partition && op.next > deletion.next);
            await eventually(
              () =>
                resumed.changes.length >= afterEvent.length + live.length &&
                fromWrite.changes.length >= afterWrite.length + live.length,
              30_000,
              'the replays and the live changes',
            );
            assertSameChanges(resumed.changes, [...afterEvent, ...live]);
            assertSameChanges(fromWrite.changes, [...afterWrite, ...live]);
            assert.deepEqual([...resumed.failures, ...fromWrite.failures], []);
          } finally {
            resumed.stop();
            fromWrite.stop();
          }
          assert.deepEqual(await failed(s.watch(b(prefix), foreignToken)), OTHER_LOG);
        },
      );

      scenario(
        "keys on every partition: a Write's one token, several Set tokens, and one token merged from several read them all; a wait spans partitions",
        null,
        async (s) => {
          const keys = keysOnEveryPartition(`${id}/partitions/`, 2);
          const written = await writer.write({
            mutations: keys.map((k, i) => ({ key: k, value: b(`w${i}`), delete: false })),
          });
          assert.equal(decodeToken(written.token).offsets.size, PARTITIONS, "the Write's token spans every partition");
          assert.deepEqual(
            (await s.getManyAfter(keys, [written.token])).values.map(text),
            keys.map((_, i) => `w${i}`),
          );

          const setTokens: Buffer[] = [];
          for (const [i, k] of keys.entries()) setTokens.push((await writer.set({ key: k, value: b(`s${i}`) })).token);
          assert.deepEqual(
            (await s.getManyAfter(keys, setTokens)).values.map(text),
            keys.map((_, i) => `s${i}`),
          );

          const expected = keys.map((_, i) => `m${i}`) as Array<string | undefined>;
          const tokens: Buffer[] = [];
          for (const [i, k] of keys.entries()) {
            if (i % 2 === 0) {
              tokens.push((await writer.delete({ key: k })).token);
              expected[i] = undefined;
            } else {
              tokens.push((await writer.set({ key: k, value: b(`m${i}`) })).token);
            }
          }
          const { logTag } = decodeToken(written.token);
          const merged = encodeToken(logTag, mergeTokens(tokens, logTag));
          assert.equal(decodeToken(merged).offsets.size, PARTITIONS);
          assert.deepEqual((await s.getManyAfter(keys, [merged])).values.map(text), expected);
          // One key's read with the merged token waits for the other partitions too: no older state anywhere.
          assert.equal(text((await s.getAfter(keys[1] as Buffer, [merged])).value), expected[1]);

          // Waiting for a write not made yet on every partition: the answer holds all three. Keys come two per
          // partition, in partition order, so tokens[2p + 1] is partition p's last write.
          const firstOfEach = keys.filter((_, i) => i % 2 === 0);
          const next = firstOfEach.map((_, p) => laterToken(tokens[2 * p + 1] as Buffer, 1));
          const waiting = s.getManyAfter(firstOfEach, next);
          waiting.catch(() => {});
          for (const [p, k] of firstOfEach.entries()) {
            const { token } = await writer.set({ key: k, value: b(`late${p}`) });
            assert.deepEqual(token, next[p], `the token named the write on partition ${p}`);
          }
          assert.deepEqual(
            (await waiting).values.map(text),
            firstOfEach.map((_, p) => `late${p}`),
          );
        },
      );
    });
  }

  interface Op {
    readonly key: string;
    readonly value: string | undefined;
    readonly token: Buffer;
    readonly partition: number;
    readonly next: number;
  }

  /**
   * Puts and deletes on `keys` (one per partition) through node A, interleaved across partitions: each key is
   * put, deleted, put again, and so on. Returns them in the order node A acknowledged them.
   */
  async function applyOps(keys: readonly Buffer[], tag = 'v'): Promise<Op[]> {
    const ops: Op[] = [];
    for (let round = 0; round < 4; round++) {
      for (const [i, k] of keys.entries()) {
        const deleting = (round + i) % 3 === 2;
        const value = deleting ? undefined : `${tag}${round}`;
        const { token } = deleting
          ? await writer.delete({ key: k })
          : await writer.set({ key: k, value: b(value as string) });
        ops.push({ key: k.toString(), value, token, ...positionOf(token) });
      }
    }
    return ops;
  }

  /**
   * The changes are exactly the ops: the same per partition in log order (order across partitions is not
   * promised), none twice, each with a token that names its write's position on its partition.
   */
  function assertSameChanges(changes: readonly SurfaceChange[], ops: readonly Op[]): void {
    const byPartition =
      <T extends { key: string }>(items: readonly T[]) =>
      (partition: number) =>
        items.filter((item) => partitionForKey(b(item.key), PARTITIONS) === partition);
    for (let p = 0; p < PARTITIONS; p++) {
      const seen = byPartition(changes)(p);
      const wanted = byPartition(ops)(p);
      assert.deepEqual(
        seen.map((c) => [c.kind, c.key, c.value]),
        wanted.map((op) => [op.value === undefined ? 'delete' : 'put', op.key, op.value]),
        `partition ${p}`,
      );
      seen.forEach((change, i) => {
        assert.equal(decodeToken(change.token).offsets.get(p), (wanted[i] as Op).next, `token of change ${i} on ${p}`);
      });
    }
    assert.equal(changes.length, ops.length, 'no change delivered twice');
  }

  /**
   * Node A writes increasing numbers to `k` while reads alternate: a read on one of `from` (what it has
   * applied now), then with its token a read on each of `to`, which must not answer an older number.
   */
  async function handOverWhileWriting(
    k: Buffer,
    from: readonly ReadSurface[],
    to: readonly ReadSurface[],
  ): Promise<void> {
    const { token: start } = await writer.set({ key: k, value: b('0') });
    for (const s of [...from, ...to]) assert.equal(text((await s.getAfter(k, [start])).value), '0');
    const WRITES = 150;
    let written = 0;
    const writing = (async () => {
      for (let i = 1; i <= WRITES; i++) {
        await writer.set({ key: k, value: b(`${i}`) });
        written = i;
      }
    })();
    let rounds = 0;
    try {
      while (written < WRITES || rounds < 20) {
        const source = from[rounds % from.length] as ReadSurface;
        const read = await source.read(k);
        assert.ok(read.token !== undefined, `${source.name} gives a token`);
        const floor = numberOf(read.value);
        for (const target of to) {
          const seen = numberOf((await target.getAfter(k, [read.token])).value);
          assert.ok(
            seen >= floor,
            `round ${rounds}: ${source.name} read ${floor}; ${target.name} given its token read ${seen}`,
          );
        }
        rounds++;
      }
    } finally {
      await writing;
    }
  }
});
