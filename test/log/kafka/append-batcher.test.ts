import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { describe, test } from 'node:test';
import type { Kvs2Error } from '../../../src/errors.js';
import { AppendBatcher, type OutgoingRecord } from '../../../src/log/kafka/append-batcher.js';
import type { LogPosition } from '../../../src/log/log.js';

/**
 * The batcher's own rules, with a send function of the test's own standing in for the produce call
 * (the real producer is exercised against real brokers in kafka-log.test.ts). Each send stays in flight
 * until the test releases it, so the test sees what the batcher sends while others are in flight.
 */
class HeldSends {
  readonly sent: OutgoingRecord[][] = [];
  readonly #releases: Array<() => void> = [];
  readonly #nextOffset = new Map<number, number>();
  inFlight = 0;
  mostInFlight = 0;

  readonly send = (records: readonly OutgoingRecord[]): Promise<LogPosition[]> => {
    this.sent.push([...records]);
    this.inFlight++;
    this.mostInFlight = Math.max(this.mostInFlight, this.inFlight);
    return new Promise((resolve) => {
      this.#releases.push(() => {
        this.inFlight--;
        resolve(
          records.map((record) => {
            const offset = this.#nextOffset.get(record.partition) ?? 0;
            this.#nextOffset.set(record.partition, offset + 1);
            return { partition: record.partition, offset };
          }),
        );
      });
    });
  };

  /** Lets every send made so far return. */
  releaseAll(): void {
    for (const release of this.#releases.splice(0)) release();
  }
}

function record(partition: number, n: number): OutgoingRecord {
  return { key: Buffer.from(`k${n}`), value: Buffer.from(`v${n}`), partition };
}

function batcher(sends: HeldSends, leaderOf: (partition: number) => number, timeoutMs = 10_000): AppendBatcher {
  return new AppendBatcher({
    send: sends.send,
    lingerMs: 0,
    maxSendBytes: 1024 * 1024,
    maxPartitionBytes: () => 1024 * 1024,
    timeoutMs,
    leaderOf,
    description: 'test log',
  });
}

/** Lets pending immediates (the linger) and promise callbacks run. */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Whether a promise has settled yet, without waiting for it. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  const marker = Symbol('pending');
  return (
    (await Promise.race([
      promise.then(
        () => true,
        () => true,
      ),
      turn().then(() => marker),
    ])) !== marker
  );
}

describe('AppendBatcher', () => {
  test('a lone append is sent within the event-loop turn, without waiting for a timer', async () => {
    const sends = new HeldSends();
    const appends = batcher(sends, () => 1);
    const appended = appends.append(record(0, 0));
    await turn();
    assert.equal(sends.sent.length, 1);
    sends.releaseAll();
    assert.deepEqual(await appended, { partition: 0, offset: 0 });
    await appends.close();
  });

  test('one leader has one send in flight; appends to any of its partitions wait and leave together', async () => {
    const sends = new HeldSends();
    const appends = batcher(sends, () => 7);
    const first = appends.append(record(0, 0));
    await turn();
    // While the first send is in flight, 60 writers append to 12 partitions of the same leader.
    const rest = Array.from({ length: 60 }, (_, n) => appends.append(record(n % 12, n + 1)));
    await turn();
    assert.equal(sends.sent.length, 1, 'no second send while the leader has one in flight');
    sends.releaseAll();
    await first;
    await turn();
    assert.equal(sends.sent.length, 2);
    assert.equal(sends.sent[1]?.length, 60, 'everything that queued leaves in the next send');
    sends.releaseAll();
    const positions = await Promise.all(rest);
    assert.equal(sends.mostInFlight, 1);
    // Each partition's appends got consecutive offsets in the order they were made.
    for (let partition = 0; partition < 12; partition++) {
      const offsets = positions.filter((p) => p.partition === partition).map((p) => p.offset);
      assert.deepEqual(
        offsets,
        [...offsets].sort((a, b) => a - b),
      );
    }
    await appends.close();
  });

  test('leaders do not wait for each other', async () => {
    const sends = new HeldSends();
    const appends = batcher(sends, (partition) => partition % 2);
    const onLeader0 = appends.append(record(0, 0));
    await turn();
    const onLeader1 = appends.append(record(1, 1));
    await turn();
    assert.equal(sends.sent.length, 2, 'the second leader sent while the first one was busy');
    assert.equal(sends.mostInFlight, 2);
    sends.releaseAll();
    await Promise.all([onLeader0, onLeader1]);
    await appends.close();
  });

  test('a partition whose leader changed still waits for its send in flight on the old leader', async () => {
    const sends = new HeldSends();
    let leader = 1;
    const appends = batcher(sends, () => leader);
    const before = appends.append(record(3, 0));
    await turn();
    leader = 2;
    const after = appends.append(record(3, 1));
    await turn();
    assert.equal(sends.sent.length, 1, 'the record must not overtake the one in flight');
    sends.releaseAll();
    await before;
    await turn();
    assert.equal(sends.sent.length, 2);
    sends.releaseAll();
    assert.deepEqual(await after, { partition: 3, offset: 1 });
    await appends.close();
  });

  test('appends sharing a signal: one listener; an abort fails every unacknowledged one and sends no more', async () => {
    const sends = new HeldSends();
    const appends = batcher(sends, () => 1);
    const call = new AbortController();
    // The first append leaves at once; the 99 made while its send is in flight wait in the queue.
    const sent = appends.append(record(0, 0), call.signal);
    await turn();
    const queued = Array.from({ length: 99 }, (_, n) => appends.append(record(n % 12, n + 1), call.signal));
    assert.equal(getEventListeners(call.signal, 'abort').length, 1, 'one listener for 100 appends');
    call.abort(new Error('client gone'));
    const outcomes = await Promise.allSettled(queued);
    assert.ok(outcomes.every((o) => o.status === 'rejected' && (o.reason as Kvs2Error).code === 'CANCELLED'));
    sends.releaseAll();
    // The append whose send was already in flight when the call was cancelled is told so too; nothing
    // more is sent for the others.
    await assert.rejects(sent, (error: Kvs2Error) => error.code === 'CANCELLED');
    await turn();
    assert.equal(sends.sent.length, 1);
    assert.equal(getEventListeners(call.signal, 'abort').length, 0);
    await appends.close();
  });

  test('the signal is let go once all its appends are acknowledged', async () => {
    const sends = new HeldSends();
    const appends = batcher(sends, () => 1);
    const call = new AbortController();
    const all = Array.from({ length: 10 }, (_, n) => appends.append(record(n % 3, n), call.signal));
    await turn();
    sends.releaseAll();
    await Promise.all(all);
    assert.equal(getEventListeners(call.signal, 'abort').length, 0);
    call.abort();
    await appends.close();
  });

  test('each append fails at its own deadline, saying whether it was sent, and a failed queued one is never sent', async () => {
    const sends = new HeldSends();
    // Partition 0 is led by broker 1, partition 1 by broker 2.
    const appends = batcher(sends, (partition) => partition + 1, 300);
    const inFlight = appends.append(record(0, 0));
    await turn();
    const queued = appends.append(record(0, 1));
    const failures = Promise.allSettled([inFlight, queued]);
    await sleep(150);
    const later = appends.append(record(1, 2));
    await turn();
    const [sent, notSent] = await failures;
    assert.match(String(sent.status === 'rejected' && sent.reason.message), /may or may not be written/);
    assert.match(String(notSent.status === 'rejected' && notSent.reason.message), /it was not written/);
    assert.equal((sent as PromiseRejectedResult).reason.code, 'LOG_UNAVAILABLE');
    // The later append has a deadline of its own, still ahead.
    assert.equal(await settled(later), false);
    sends.releaseAll();
    assert.deepEqual(await later, { partition: 1, offset: 0 });
    await turn();
    // The first send returned after its caller had been told; the queued append never left.
    assert.deepEqual(
      sends.sent.map((batch) => batch.map((r) => r.key.toString())),
      [['k0'], ['k2']],
    );
    await appends.close();
  });

  test('appends acknowledged in time are never failed by the deadline timer', async () => {
    const sends = new HeldSends();
    const appends = batcher(sends, () => 1, 100);
    const first = appends.append(record(0, 0));
    await turn();
    sends.releaseAll();
    assert.deepEqual(await first, { partition: 0, offset: 0 });
    // A second one, made after the first settled, is held past the first one's deadline but not its own.
    await sleep(60);
    const second = appends.append(record(0, 1));
    await turn();
    await sleep(60);
    assert.equal(await settled(second), false);
    sends.releaseAll();
    assert.deepEqual(await second, { partition: 0, offset: 1 });
    await appends.close();
  });
});
