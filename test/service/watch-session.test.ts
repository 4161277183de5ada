import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isKvs2Error } from '../../src/errors.js';
import { createLogger } from '../../src/logger.js';
import { hasReached } from '../../src/offsets.js';
import { ChangeBroadcaster } from '../../src/replica/change-feed.js';
import { decodeToken, encodeToken, logTagOf } from '../../src/service/consistency-token.js';
import { type WatchEvent, WatchSession } from '../../src/service/watch-session.js';
import { MemoryLog } from '../support/memory-log.js';

const logger = createLogger('silent');
const b = (text: string): Buffer => Buffer.from(text);

/** What the replica does for watches: applies the log's batches and announces each on the feed. */
class AppliedFeed {
  readonly applied = new Map<number, number>();
  readonly feed = new ChangeBroadcaster(() => this.applied, logger);
  constructor(readonly log: MemoryLog) {}

  /** Applies everything the log holds now, batch by batch as the log yields them. */
  async applyAll(): Promise<void> {
    const end = await this.log.endOffsets();
    if (hasReached(this.applied, end)) return;
    const stop = new AbortController();
    for await (const batch of this.log.read(this.applied, stop.signal)) {
      for (const [partition, offset] of batch.nextOffsets) this.applied.set(partition, offset);
      this.feed.emit({ kind: 'applied', records: batch.records, nextOffsets: batch.nextOffsets });
      if (hasReached(this.applied, end)) break;
    }
  }
}

async function setup(): Promise<{ log: MemoryLog; replica: AppliedFeed; logTag: Buffer }> {
  const log = new MemoryLog({ maxBatchRecords: 1000 });
  const logTag = logTagOf(await log.open());
  return { log, replica: new AppliedFeed(log), logTag };
}

/** Appends w/<from> .. w/<to - 1> in one go, so that the replica applies them as one batch. */
async function put(log: MemoryLog, from: number, to: number): Promise<void> {
  await Promise.all(Array.from({ length: to - from }, (_, i) => log.append(b(`w/${from + i}`), b(`v${from + i}`))));
}

function watch(
  setupDone: { log: MemoryLog; replica: AppliedFeed; logTag: Buffer },
  options: { after?: Buffer; maxQueuedEvents?: number; maxQueuedBytes?: number } = {},
): WatchSession {
  return new WatchSession({
    source: { feed: setupDone.replica.feed, history: setupDone.log },
    logTag: setupDone.logTag,
    key: Buffer.alloc(0),
    prefix: b('w/'),
    after: options.after ?? null,
    progressIntervalMs: 60_000,
    maxQueuedEvents: options.maxQueuedEvents ?? 10,
    maxQueuedBytes: options.maxQueuedBytes ?? 1024 * 1024,
    signal: new AbortController().signal,
  });
}

/** Takes events until the watch fails; returns them and the failure. */
async function drain(session: WatchSession): Promise<{ events: WatchEvent[]; failure: unknown }> {
  const events: WatchEvent[] = [];
  for (;;) {
    try {
      events.push(await session.next());
    } catch (failure) {
      return { events, failure };
    }
  }
}

async function take(session: WatchSession, count: number): Promise<WatchEvent[]> {
  const events: WatchEvent[] = [];
  while (events.length < count) events.push(await session.next());
  return events;
}

const keys = (events: readonly WatchEvent[]): string[] => events.map((e) => e.key.toString());
const range = (from: number, to: number): string[] => Array.from({ length: to - from }, (_, i) => `w/${from + i}`);

describe('WatchSession', () => {
  test('a watcher cut off in the middle of a batch gets nothing after the gap, and its last token resumes without loss', async () => {
    const setupDone = await setup();
    const { log, replica } = setupDone;
    const first = watch(setupDone, { maxQueuedEvents: 10 });
    await put(log, 0, 3);
    await replica.applyAll();
    const seen = await take(first, 3);
    // One applied batch of 25 matching records overflows a queue of 10 while nobody reads.
    await put(log, 3, 28);
    await replica.applyAll();
    const { events, failure } = await drain(first);
    assert.ok(isKvs2Error(failure) && failure.code === 'WATCHER_TOO_SLOW', String(failure));
    const received = [...seen, ...events];
    assert.deepEqual(keys(received), range(0, received.length), 'a gap-free prefix of the changes');
    const last = received.at(-1);
    assert.ok(last);
    assert.deepEqual(decodeToken(last.token).offsets, new Map([[0, received.length]]));

    const resumed = watch(setupDone, { after: last.token, maxQueuedEvents: 10 });
    assert.deepEqual(keys(await take(resumed, 28 - received.length)), range(received.length, 28));
    await put(log, 28, 29);
    await replica.applyAll();
    assert.deepEqual(keys(await take(resumed, 1)), ['w/28']);
    resumed.close();
    await assert.rejects(resumed.next(), { code: 'CANCELLED' });
  });

  test('a replay longer than the queue goes at the reader pace, live changes held back meanwhile follow in order', async () => {
    const setupDone = await setup();
    const { log, replica, logTag } = setupDone;
    await put(log, 0, 50);
    await replica.applyAll();
    const session = watch(setupDone, { after: encodeToken(logTag, new Map([[0, 0]])), maxQueuedEvents: 10 });
    // The replay fills the queue and waits; these arrive live meanwhile and are held back.
    await put(log, 50, 55);
    await replica.applyAll();
    assert.deepEqual(keys(await take(session, 55)), range(0, 55));
    await put(log, 55, 56);
    await replica.applyAll();
    assert.deepEqual(keys(await take(session, 1)), ['w/55']);
    session.close();
  });

  test('a lone event larger than the byte bound is delivered, not cut off', async () => {
    const setupDone = await setup();
    const { log, replica } = setupDone;
    const session = watch(setupDone, { maxQueuedBytes: 1024 });
    await log.append(b('w/big'), Buffer.alloc(4096, 1));
    await replica.applyAll();
    const [event] = await take(session, 1);
    assert.equal(event?.value.length, 4096);
    session.close();
  });

  test('a token older than the log holds ends the watch with TOKEN_TOO_OLD, having delivered nothing', async () => {
    const setupDone = await setup();
    const { log, replica, logTag } = setupDone;
    await put(log, 0, 5);
    await replica.applyAll();
    log.truncateBefore(0, 3);
    const session = watch(setupDone, { after: encodeToken(logTag, new Map([[0, 1]])) });
    const { events, failure } = await drain(session);
    assert.deepEqual(events, []);
    assert.ok(isKvs2Error(failure) && failure.code === 'TOKEN_TOO_OLD', String(failure));
  });
});
