import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { Consistency, Kvs2Client } from '../../src/client/kvs2-client.js';
import { isKvs2Error } from '../../src/errors.js';
import { type Kvs2Replica, openReplica, type ReplicaChange } from '../../src/replica-lib/index.js';
import type { ReplicaOptions } from '../../src/replica-lib/replica-api.js';
import { decodeToken, encodeToken, logTagOf } from '../../src/service/consistency-token.js';
import { eventually } from '../support/grpc-clients.js';
import { kafkaBrokers, needsKafka } from '../support/kafka-env.js';
import { tempDir } from '../support/paths.js';
import { ServerProcess } from '../support/server-process.js';

const b = (text: string): Buffer => Buffer.from(text);
const text = (value: Buffer | undefined): string | undefined => value?.toString();
/** Generous: the first catch-up of a fresh topic waits for its leaders; nothing here is timed. */
const WAIT = (): AbortSignal => AbortSignal.timeout(60_000);

/** Resolves with the error code a promise (or a call) fails with; fails the test if it does not. */
async function codeOf(action: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof action === 'function' ? action() : action);
  } catch (error) {
    assert.ok(isKvs2Error(error), `not a Kvs2Error: ${String(error)}`);
    return error.code;
  }
  return assert.fail('it did not fail');
}

/** A pino logger whose lines the test reads. */
function capturingLogger(): { logger: ReplicaOptions['logger']; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

describe('refusals of openReplica that need no broker', () => {
  test('without Kafka: the library reads a topic, never an embedded log', async () => {
    const dir = await tempDir('replica-lib-refusals');
    try {
      const options = { dataDir: dir.path } as unknown as ReplicaOptions;
      const error = await openReplica(options).then(
        () => assert.fail('opened without Kafka'),
        (e: unknown) => e,
      );
      assert.ok(isKvs2Error(error));
      assert.equal(error.code, 'INVALID_ARGUMENT');
      assert.match(error.message, /Kafka topic.*embedded log/);
    } finally {
      await dir.remove();
    }
  });

  test("a data dir holding a node's embedded log, and options the node's parser refuses", async () => {
    const dir = await tempDir('replica-lib-refusals');
    try {
      await mkdir(join(dir.path, 'log'));
      await writeFile(join(dir.path, 'log', '00000000000000000000.seg'), 'x');
      const kafka = { brokers: ['127.0.0.1:1'], topic: 'kvs2' };
      const embedded = await openReplica({ kafka, dataDir: dir.path }).catch((e: unknown) => e);
      assert.ok(isKvs2Error(embedded));
      assert.deepEqual([embedded.code, /embedded log/.test(embedded.message)], ['INVALID_ARGUMENT', true]);
      const badTopic = await openReplica({
        kafka: { brokers: ['127.0.0.1:1'], topic: 'no spaces allowed' },
        dataDir: join(dir.path, 'other'),
      }).catch((e: unknown) => e);
      assert.ok(isKvs2Error(badTopic));
      assert.deepEqual([badTopic.code, badTopic.message.includes('kafka.topic')], ['INVALID_ARGUMENT', true]);
      const tlsWithoutTls = await openReplica({
        kafka: { ...kafka, security: { protocol: 'PLAINTEXT', tlsCaFile: 'ca.pem' } },
        dataDir: join(dir.path, 'other'),
      }).catch((e: unknown) => e);
      assert.ok(isKvs2Error(tlsWithoutTls));
      assert.deepEqual(
        [tlsWithoutTls.code, tlsWithoutTls.message.includes('kafka.security.tlsCaFile')],
        ['INVALID_ARGUMENT', true],
      );
      const noStallLimit = await openReplica({
        kafka,
        dataDir: join(dir.path, 'other'),
        bootstrapFrom: { peers: ['127.0.0.1:2'], stallTimeoutMs: 0 },
      }).catch((e: unknown) => e);
      assert.ok(isKvs2Error(noStallLimit));
      assert.deepEqual(
        [noStallLimit.code, noStallLimit.message.includes('bootstrapFrom.stallTimeoutMs')],
        ['INVALID_ARGUMENT', true],
      );
      const badThread = await openReplica({
        kafka,
        dataDir: join(dir.path, 'other'),
        applyOn: 'main' as unknown as 'worker',
      }).catch((e: unknown) => e);
      assert.ok(isKvs2Error(badThread));
      assert.deepEqual([badThread.code, badThread.message.includes('applyOn')], ['INVALID_ARGUMENT', true]);
    } finally {
      await dir.remove();
    }
  });
});

/** The threads of this process by name (`/proc/self/task/<tid>/comm`): the replica's worker is `kvs2-replica`. */
async function threadNames(): Promise<string[]> {
  const tids = await readdir('/proc/self/task');
  const names = await Promise.all(tids.map((tid) => readFile(`/proc/self/task/${tid}/comm`, 'utf8').catch(() => '')));
  return names.map((name) => name.trim());
}

/**
 * The library in this process and a real node on the same topic: the node writes, the library reads. Every
 * test runs with the replica on its worker thread (the default) and on the application's thread.
 */
for (const applyOn of ['worker', 'caller'] as const)
  describe(`the in-process replica (kvs2/replica, applyOn: '${applyOn}') beside a node on Kafka`, needsKafka(), () => {
    let dir: Awaited<ReturnType<typeof tempDir>>;
    let node: ServerProcess;
    let client: Kvs2Client;
    let brokers: string[];
    let topic: string;
    const open = (name: string, logger?: ReplicaOptions['logger']): Promise<Kvs2Replica> =>
      openReplica({ kafka: { brokers, topic }, dataDir: join(dir.path, name), applyOn, ...(logger ? { logger } : {}) });

    before(async () => {
      brokers = kafkaBrokers();
      topic = `kvs2-test-${randomUUID()}`;
      dir = await tempDir('replica-lib');
      node = await ServerProcess.start({
        dataDir: join(dir.path, 'node'),
        args: ['--kafka-brokers', brokers.join(','), '--topic', topic, '--partitions', '3'],
      });
      await node.waitUntilCaughtUp();
      client = new Kvs2Client(node.address);
    });
    after(async () => {
      client?.close();
      await node?.stop();
      await dir?.remove();
    });

    test('after whenCaughtUp get sees every earlier write; getAfter waits for a token; a delete disappears', async () => {
      for (let i = 0; i < 30; i++) await client.set({ key: b(`early/${i}`), value: b(`v${i}`) });
      const replica = await open('reads');
      try {
        await replica.whenCaughtUp(WAIT());
        assert.equal(replica.status().caughtUp, true);
        for (let i = 0; i < 30; i++) assert.equal(text(replica.get(b(`early/${i}`))), `v${i}`, `early/${i}`);
        assert.deepEqual(replica.getMany([b('early/3'), b('nothing'), b('early/3')]).map(text), [
          'v3',
          undefined,
          'v3',
        ]);
        const scanned = replica.scan({ prefix: b('early/1') });
        assert.deepEqual(
          scanned.map((entry) => [entry.key.toString(), entry.value.toString()]),
          ['early/1', ...Array.from({ length: 10 }, (_, i) => `early/1${i}`)].map((key) => [key, `v${key.slice(6)}`]),
        );
        assert.equal(replica.scan({ start: b('early/'), end: b('early0') }, 5).length, 5);
        // Each read runs right after the node acknowledged the write: only the token makes it see it.
        const positions: number[] = [];
        for (let i = 0; i < 50; i++) {
          const { token } = await client.set({ key: b(`ryw/${i % 5}`), value: b(`${i}`) });
          assert.equal(text(await replica.getAfter(b(`ryw/${i % 5}`), token, WAIT())), `${i}`, `iteration ${i}`);
          // The version is the write's position in its partition (offset + 1), as the node reports it.
          positions[i % 5] = [...decodeToken(token).offsets.values()][0] as number;
          assert.equal(replica.getEntry(b(`ryw/${i % 5}`))?.version, positions[i % 5], `version of iteration ${i}`);
        }
        assert.deepEqual(
          replica.scan({ prefix: b('ryw/') }).map((e) => e.version),
          positions,
        );
        const written = await client.set({ key: b('many/a'), value: b('A') });
        assert.deepEqual((await replica.getManyAfter([b('many/a'), b('early/0')], [written.token], WAIT())).map(text), [
          'A',
          'v0',
        ]);
        const deleted = await client.delete({ key: b('early/3') });
        assert.equal(await replica.getAfter(b('early/3'), deleted.token, WAIT()), undefined);
        assert.equal(replica.get(b('early/3')), undefined);
        // The library's token works the other way round: a node given it reads no older state.
        const status = replica.status();
        assert.ok(status.keys >= 30 + 5);
        assert.equal(status.failure, null);
        assert.ok(status.partitions.length === 3 && status.partitions.every((p) => p.appliedOffset >= 0));
        const read = await client.get({
          key: b('many/a'),
          consistency: Consistency.CONSISTENCY_AT_LEAST,
          after: [replica.token()],
        });
        assert.equal(read.data.toString(), 'A');
        // A token of another topic can never be waited for.
        const foreign = encodeToken(logTagOf('another topic'), new Map([[0, 1]]));
        assert.equal(await codeOf(replica.getAfter(b('early/0'), foreign)), 'TOKEN_FROM_OTHER_LOG');
        assert.equal(await codeOf(() => replica.get(Buffer.alloc(0))), 'INVALID_ARGUMENT');
      } finally {
        await replica.close();
      }
    });

    test('watch sees puts and deletes in order, and resumes from a token', async () => {
      const replica = await open('watch');
      try {
        await replica.whenCaughtUp(WAIT());
        const seen: ReplicaChange[] = [];
        const errors: Error[] = [];
        const unsubscribe = replica.watch({ prefix: b('w/') }, (change) => seen.push(change), {
          onError: (error) => errors.push(error),
        });
        const first = await client.set({ key: b('w/a'), value: b('1') });
        await client.set({ key: b('w/a'), value: b('2') });
        await client.set({ key: b('other'), value: b('not watched') });
        await client.delete({ key: b('w/a') });
        const last = await client.set({ key: b('w/a'), value: b('3') });
        await eventually(() => seen.length >= 4, 30_000, 'four changes');
        const shape = (changes: readonly ReplicaChange[]): string[] =>
          changes.map((c) => `${c.kind} ${c.key.toString()}${c.value === undefined ? '' : `=${c.value.toString()}`}`);
        assert.deepEqual(shape(seen), ['put w/a=1', 'put w/a=2', 'delete w/a', 'put w/a=3']);
        assert.deepEqual(errors.map(String), []);
        // The token of an event reads no older state than the event, through the node as through the library.
        assert.equal(text(await replica.getAfter(b('w/a'), seen[3]?.token ?? Buffer.alloc(0), WAIT())), '3');
        unsubscribe();
        const late = await client.set({ key: b('w/a'), value: b('after unsubscribe') });
        assert.equal(text(await replica.getAfter(b('w/a'), late.token, WAIT())), 'after unsubscribe');
        assert.equal(seen.length, 4, 'nothing is delivered after unsubscribing');

        // Resuming from the second event replays what followed it from the topic, then goes on live.
        const resumed: ReplicaChange[] = [];
        const stop = replica.watch({ key: b('w/a') }, (change) => resumed.push(change), {
          after: seen[1]?.token ?? Buffer.alloc(0),
          onError: (error) => errors.push(error),
        });
        await eventually(() => resumed.length >= 3, 30_000, 'the replay');
        await client.set({ key: b('w/a'), value: b('4') });
        await eventually(() => resumed.length >= 4, 30_000, 'the live change');
        assert.deepEqual(shape(resumed), ['delete w/a', 'put w/a=3', 'put w/a=after unsubscribe', 'put w/a=4']);
        stop();
        // From a Set's token: every change after that write.
        const fromSet: ReplicaChange[] = [];
        const stopFromSet = replica.watch({ key: b('w/a') }, (change) => fromSet.push(change), { after: first.token });
        await eventually(() => fromSet.length >= 5, 30_000, 'the replay from a Set token');
        assert.deepEqual(shape(fromSet).slice(0, 3), ['put w/a=2', 'delete w/a', 'put w/a=3']);
        stopFromSet();
        assert.ok(last.token.length > 0);
        assert.deepEqual(errors.map(String), []);
      } finally {
        await replica.close();
      }
    });

    test('close() ends watches and waiting reads with SHUTTING_DOWN; a reopen resumes from the store', async () => {
      for (let i = 0; i < 20; i++) await client.set({ key: b(`resume/${i}`), value: b(`r${i}`) });
      const firstRun = await open('resume');
      await firstRun.whenCaughtUp(WAIT());
      const { token: lastWrite } = await client.set({ key: b('resume/last'), value: b('before close') });
      assert.equal(text(await firstRun.getAfter(b('resume/last'), lastWrite, WAIT())), 'before close');
      const watchErrors: Error[] = [];
      firstRun.watch({ prefix: b('') }, () => {}, { onError: (error) => watchErrors.push(error) });
      // A token far past the topic's end: only close() can end this wait.
      const { logTag } = decodeToken(firstRun.token());
      const waiting = codeOf(firstRun.getAfter(b('resume/0'), encodeToken(logTag, new Map([[0, 1_000_000_000]]))));
      const closedToken = decodeToken(firstRun.token());
      const replicaThreads = (await threadNames()).filter((name) => name === 'kvs2-replica');
      assert.equal(replicaThreads.length, applyOn === 'worker' ? 1 : 0, 'the worker thread runs until close()');
      await firstRun.close();
      assert.equal(await waiting, 'SHUTTING_DOWN');
      assert.deepEqual(
        watchErrors.map((error) => (isKvs2Error(error) ? error.code : error.message)),
        ['SHUTTING_DOWN'],
      );
      assert.equal(await codeOf(() => firstRun.get(b('resume/0'))), 'SHUTTING_DOWN');
      await firstRun.close();
      // Nothing of the replica runs once close() resolved: with applyOn 'worker', its thread has exited.
      assert.deepEqual(
        (await threadNames()).filter((name) => name === 'kvs2-replica'),
        [],
      );

      const { token: later } = await client.set({ key: b('resume/later'), value: b('after close') });
      const { logger, lines } = capturingLogger();
      const secondRun = await open('resume', logger);
      try {
        // Straight from the store, before the topic is even read.
        assert.equal(text(secondRun.get(b('resume/7'))), 'r7');
        await eventually(() => lines.some((line) => line.msg === 'replica starting'), 30_000, 'the replica to start');
        const starting = lines.find((line) => line.msg === 'replica starting');
        // It resumes where the first run stopped, not from the start of the topic.
        assert.deepEqual(
          starting?.appliedOffsets,
          Object.fromEntries([...closedToken.offsets].map(([p, o]) => [`${p}`, o])),
        );
        assert.ok([...closedToken.offsets.values()].some((offset) => offset > 0));
        assert.equal(text(await secondRun.getAfter(b('resume/later'), later, WAIT())), 'after close');
        await secondRun.whenCaughtUp(WAIT());
      } finally {
        await secondRun.close();
      }
    });

    test("bootstrapFrom: an empty replica loads a node's snapshot, then reads the topic from its offsets", async () => {
      const { token } = await client.set({ key: b('boot/x'), value: b('from the snapshot or the topic') });
      const { logger, lines } = capturingLogger();
      const replica = await openReplica({
        kafka: { brokers, topic },
        dataDir: join(dir.path, 'bootstrapped'),
        applyOn,
        logger,
        bootstrapFrom: { peers: [node.address] },
      });
      try {
        await replica.whenCaughtUp(WAIT());
        const loaded = lines.find(
          (line) => typeof line.msg === 'string' && line.msg.startsWith('bootstrapped from peer'),
        );
        assert.ok(loaded, `no bootstrap in ${JSON.stringify(lines.map((line) => line.msg))}`);
        assert.equal(loaded.peer, node.address);
        assert.equal(loaded.format, 'store-image', "the node's store file, installed before the store opened");
        assert.equal(text(await replica.getAfter(b('boot/x'), token, WAIT())), 'from the snapshot or the topic');
        const later = await client.set({ key: b('boot/later'), value: b('from the topic') });
        assert.equal(text(await replica.getAfter(b('boot/later'), later.token, WAIT())), 'from the topic');
      } finally {
        await replica.close();
      }
    });

    test("a running node's data dir is refused: its store has one owner", async () => {
      const error = await openReplica({ kafka: { brokers, topic }, dataDir: join(dir.path, 'node'), applyOn }).catch(
        (e: unknown) => e,
      );
      assert.ok(isKvs2Error(error));
      assert.equal(error.code, 'DATA_DIR_IN_USE');
    });
  });
