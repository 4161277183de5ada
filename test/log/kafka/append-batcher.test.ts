import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { describe, test } from 'node:test';
import { Kvs2Error } from '../../../src/errors.js';
import {
  AppendBatcher,
  type OutgoingRecord,
  type RecordSender,
  SendFailure,
} from '../../../src/log/kafka/append-batcher.js';
import type { LogPosition } from '../../../src/log/log.js';

/**
 * The batcher's own rules, with a RecordSender of the test's own standing in for the produce request
 * (the real producer is exercised against real brokers in kafka-log.test.ts). Each send stays in flight
 * until the test releases it, so the test sees what the batcher sends while others are in flight.
 */
class HeldSends implements RecordSender {
  readonly sent: OutgoingRecord[][] = [];
  readonly #releases: Array<(failure?: SendFailure) => void> = [];
  readonly #nextOffset = new Map<number, number>();
  readonly maxPartitionBytes = 1024 * 1024;
  inFlight = 0;
  mostInFlight = 0;

  constructor(readonly leaderOf: (partition: number) => number) {}

  send(records: readonly OutgoingRecord[]): Promise<LogPosition[]> {
    this.sent.push([...records]);
    this.inFlight++;
    this.mostInFlight = Math.max(this.mostInFlight, this.inFlight);
    return new Promise((resolve, reject) => {
      this.#releases.push((failure) => {
        this.inFlight--;
        if (failure !== undefined) {
          reject(failure);
          return;
        }
        resolve(
          records.map((record) => {
            const offset = this.#nextOffset.get(record.partition) ?? 0;
            this.#nextOffset.set(record.partition, offset + 1);
            return { partition: record.partition, offset };
          }),
        );
      });
    });
  }

  /** Lets every send made so far return. */
  releaseAll(): void {
    for (const release of this.#releases.splice(0)) release();
  }

  /** Makes every send made so far fail. */
  failAll(failure: SendFailure): void {
    for (const release of this.#releases.splice(0)) release(failure);
  }
}

function record(partition: number, n: number): OutgoingRecord {
  return { key: Buffer.from(`k${n}`), value: Buffer.from(`v${n}`), partition };
}

function batcher(sends: HeldSends): AppendBatcher {
  return new AppendBatcher(sends, { lingerMs: 0, maxSendBytes: 1024 * 1024, description: 'test log' });
}

/** A signal of a caller that waits as long as it takes. */
function patient(): AbortSignal {
  return new AbortController().signal;
}

/** Lets pending immediates (the linger) and promise callbacks run. */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

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
    const sends = new HeldSends(() => 1);
    const appends = batcher(sends);
    const appended = appends.append(record(0, 0), patient());
    await turn();
    assert.equal(sends.sent.length, 1);
    sends.releaseAll();
    assert.deepEqual(await appended, { partition: 0, offset: 0 });
    await appends.close();
  });

  test('one leader has one send in flight; appends to any of its partitions wait and leave together', async () => {
    const sends = new HeldSends(() => 7);
    const appends = batcher(sends);
    const first = appends.append(record(0, 0), patient());
    await turn();
    // While the first send is in flight, 60 writers append to 12 partitions of the same leader.
    const rest = Array.from({ length: 60 }, (_, n) => appends.append(record(n % 12, n + 1), patient()));
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
    const sends = new HeldSends((partition) => partition % 2);
    const appends = batcher(sends);
    const onLeader0 = appends.append(record(0, 0), patient());
    await turn();
    const onLeader1 = appends.append(record(1, 1), patient());
    await turn();
    assert.equal(sends.sent.length, 2, 'the second leader sent while the first one was busy');
    assert.equal(sends.mostInFlight, 2);
    sends.releaseAll();
    await Promise.all([onLeader0, onLeader1]);
    await appends.close();
  });

  test('a partition whose leader changed still waits for its send in flight on the old leader', async () => {
    let leader = 1;
    const sends = new HeldSends(() => leader);
    const appends = batcher(sends);
    const before = appends.append(record(3, 0), patient());
    await turn();
    leader = 2;
    const after = appends.append(record(3, 1), patient());
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
    const sends = new HeldSends(() => 1);
    const appends = batcher(sends);
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
    const sends = new HeldSends(() => 1);
    const appends = batcher(sends);
    const call = new AbortController();
    const all = Array.from({ length: 10 }, (_, n) => appends.append(record(n % 3, n), call.signal));
    await turn();
    sends.releaseAll();
    await Promise.all(all);
    assert.equal(getEventListeners(call.signal, 'abort').length, 0);
    call.abort();
    await appends.close();
  });

  test('an append fails when its own signal aborts, saying so; a queued one is never sent, later ones go on', async () => {
    // Partition 0 is led by broker 1, partition 1 by broker 2.
    const sends = new HeldSends((partition) => partition + 1);
    const appends = batcher(sends);
    const first = new AbortController();
    const inFlight = appends.append(record(0, 0), first.signal);
    await turn();
    const second = new AbortController();
    const queued = appends.append(record(0, 1), second.signal);
    const later = appends.append(record(1, 2), patient());
    await turn();
    first.abort(new Kvs2Error('DEADLINE_EXCEEDED', 'deadline exceeded'));
    second.abort(new Kvs2Error('DEADLINE_EXCEEDED', 'deadline exceeded'));
    await assert.rejects(inFlight, (error: Kvs2Error) => error.code === 'DEADLINE_EXCEEDED');
    await assert.rejects(queued, (error: Kvs2Error) => error.code === 'DEADLINE_EXCEEDED');
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

  test('a send that failed retryably goes again, in order, with only the appends whose callers still wait', async () => {
    const sends = new HeldSends(() => 1);
    const appends = batcher(sends);
    const givesUp = new AbortController();
    const first = appends.append(record(0, 0), patient());
    const abandoned = appends.append(record(0, 1), givesUp.signal);
    await turn();
    const queuedMeanwhile = appends.append(record(0, 2), patient());
    await turn();
    assert.equal(sends.sent.length, 1);
    sends.failAll(new SendFailure('broker gone', true));
    // The caller of k1 gives up while the batch waits to be sent again: k1 must not leave any more.
    givesUp.abort(new Kvs2Error('DEADLINE_EXCEEDED', 'deadline exceeded'));
    await assert.rejects(abandoned, (error: Kvs2Error) => error.code === 'DEADLINE_EXCEEDED');
    while (sends.sent.length < 2) await turn();
    assert.deepEqual(
      sends.sent.map((batch) => batch.map((r) => r.key.toString())),
      [
        ['k0', 'k1'],
        ['k0', 'k2'],
      ],
      'the retry keeps partition order and leaves out the append given up on',
    );
    sends.releaseAll();
    assert.deepEqual(await first, { partition: 0, offset: 0 });
    assert.deepEqual(await queuedMeanwhile, { partition: 0, offset: 1 });
    await appends.close();
  });

  test('a send that failed for good fails its appends at once; close waits for a retried one', async () => {
    const sends = new HeldSends(() => 1);
    const appends = batcher(sends);
    const refused = appends.append(record(0, 0), patient());
    await turn();
    sends.failAll(new SendFailure('MESSAGE_TOO_LARGE', false));
    await assert.rejects(refused, (error: Kvs2Error) => error.code === 'LOG_UNAVAILABLE');

    const pending = appends.append(record(0, 1), patient());
    await turn();
    const closing = appends.close();
    sends.failAll(new SendFailure('broker gone', true));
    await assert.rejects(appends.append(record(0, 2), patient()), (error: Kvs2Error) => error.code === 'SHUTTING_DOWN');
    while (sends.sent.length < 3) await turn();
    assert.equal(await settled(closing), false, 'close waits for the pending append');
    sends.releaseAll();
    assert.deepEqual(await pending, { partition: 0, offset: 0 });
    await closing;
  });
});
