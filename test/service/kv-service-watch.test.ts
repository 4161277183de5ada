import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Kvs2Error } from '../../src/errors.js';
import type { Replica } from '../../src/replica/replica.js';
import { decodeToken, encodeToken, logTagOf } from '../../src/service/consistency-token.js';
import type { WatchRequest } from '../../src/service/requests.js';
import type { WatchEvent, WatchSession } from '../../src/service/watch-session.js';
import { assertFails, b, EMPTY, noDeadline } from '../support/service-calls.js';
import { type ServiceNode, startLiveNode } from '../support/service-node.js';

const watchRequest = (fields: Partial<WatchRequest>): WatchRequest => ({
  key: EMPTY,
  prefix: EMPTY,
  after: EMPTY,
  // Long enough that no progress event comes unless a test asks for one.
  progressIntervalMs: 3_600_000,
  ...fields,
});

/** The next `count` events that are changes (progress events skipped). */
async function changes(session: WatchSession, count: number): Promise<WatchEvent[]> {
  const events: WatchEvent[] = [];
  while (events.length < count) {
    const event = await session.next();
    if (event.kind !== 'progress') events.push(event);
  }
  return events;
}

const shown = (events: readonly WatchEvent[]) => events.map((e) => [e.kind, e.key.toString(), e.value.toString()]);

describe('KvService.watch', () => {
  let node: ServiceNode<Replica>;
  const sessions: WatchSession[] = [];
  /** Starts a watch that the suite closes at the end, whatever happens. */
  const watch = (fields: Partial<WatchRequest>, signal = new AbortController().signal): WatchSession => {
    const session = node.service.watch(watchRequest(fields), signal);
    sessions.push(session);
    return session;
  };
  before(async () => {
    node = await startLiveNode();
  });
  after(async () => {
    for (const session of sessions) session.close();
    await node.close();
  });

  test('from now: the puts and deletes under a prefix, in log order, each with a token just past it', async () => {
    const { service, log } = node;
    const session = watch({ prefix: b('watch/') });
    const start = (await log.endOffsets()).get(0) ?? 0;
    await service.set({ key: b('watch/a'), value: b('1'), waitForApply: false }, noDeadline());
    await service.set({ key: b('other'), value: b('not watched'), waitForApply: false }, noDeadline());
    await service.delete({ key: b('watch/a'), waitForApply: false }, noDeadline());
    await service.write(
      {
        mutations: [
          { key: b('watch/b'), value: b('2'), delete: false },
          { key: b('watch/c'), value: b('3'), delete: false },
        ],
        waitForApply: false,
      },
      noDeadline(),
    );
    const events = await changes(session, 4);
    assert.deepEqual(shown(events), [
      ['put', 'watch/a', '1'],
      ['delete', 'watch/a', ''],
      ['put', 'watch/b', '2'],
      ['put', 'watch/c', '3'],
    ]);
    assert.deepEqual(
      events.map((event) => decodeToken(event.token).offsets.get(0)),
      [start + 1, start + 3, start + 4, start + 5],
    );
    assert.deepEqual(decodeToken(events[0]?.token ?? EMPTY).logTag, service.currentLogTag());
  });

  test('a key watch sees that key only, not the keys it prefixes', async () => {
    const { service } = node;
    const session = watch({ key: b('only') });
    await service.set({ key: b('only-not'), value: b('x'), waitForApply: false }, noDeadline());
    await service.set({ key: b('only'), value: b('y'), waitForApply: false }, noDeadline());
    assert.deepEqual(shown(await changes(session, 1)), [['put', 'only', 'y']]);
  });

  test('from a token: the changes after it are replayed, then live ones follow', async () => {
    const { service } = node;
    const first = await service.set({ key: b('resume'), value: b('1'), waitForApply: true }, noDeadline());
    await service.set({ key: b('resume'), value: b('2'), waitForApply: false }, noDeadline());
    await service.set({ key: b('resume-not'), value: b('x'), waitForApply: false }, noDeadline());
    await service.set({ key: b('resume'), value: b('3'), waitForApply: true }, noDeadline());
    const session = watch({ key: b('resume'), after: first.token });
    assert.deepEqual(shown(await changes(session, 2)), [
      ['put', 'resume', '2'],
      ['put', 'resume', '3'],
    ]);
    await service.set({ key: b('resume'), value: b('4'), waitForApply: false }, noDeadline());
    assert.deepEqual(shown(await changes(session, 1)), [['put', 'resume', '4']]);
  });

  test('when nothing happens, progress events carry the token of what was applied', async () => {
    const session = watch({ prefix: b('quiet/'), progressIntervalMs: 1 });
    // A 1 ms interval is raised to the minimum of 100 ms: the wait for the event is that long.
    const event = await session.next();
    assert.equal(event.kind, 'progress');
    assert.deepEqual([event.key, event.value], [EMPTY, EMPTY]);
    assert.deepEqual(decodeToken(event.token).offsets, node.replica.watermark.appliedOffsets);
  });

  test("the signal ends the watch: CANCELLED, DEADLINE_EXCEEDED, or the abort's own Kvs2Error", async () => {
    const cancel = new AbortController();
    const cancelled = watch({ prefix: b('x') }, cancel.signal);
    cancel.abort();
    await assertFails(() => cancelled.next(), 'CANCELLED');
    await assertFails(() => watch({ prefix: b('x') }, AbortSignal.timeout(10)).next(), 'DEADLINE_EXCEEDED');
    const shutdown = new AbortController();
    const shut = watch({ prefix: b('x') }, shutdown.signal);
    shutdown.abort(new Kvs2Error('SHUTTING_DOWN', 'the node is shutting down'));
    await assertFails(() => shut.next(), 'SHUTTING_DOWN');
    const closed = watch({ prefix: b('x') });
    closed.close();
    await assertFails(() => closed.next(), 'CANCELLED');
  });

  test('bad requests are refused at once, naming the field', async () => {
    const { limits } = node;
    const tooLong = Buffer.alloc(limits.maxKeyBytes + 1, 'k');
    const start = (fields: Partial<WatchRequest>) => () => watch(fields);
    await assertFails(start({ key: b('a'), prefix: b('a') }), 'INVALID_ARGUMENT', /either key or prefix, not both/);
    await assertFails(start({ key: tooLong }), 'INVALID_ARGUMENT', /^key is \d+ bytes; at most \d+/);
    await assertFails(start({ prefix: tooLong }), 'INVALID_ARGUMENT', /^prefix is \d+ bytes; at most \d+/);
    await assertFails(
      start({ after: Buffer.alloc(1024 * 1024 + 1) }),
      'INVALID_ARGUMENT',
      /^after is 1048577 bytes; no token is longer than 1048576/,
    );
    await assertFails(start({ after: b('garbage') }), 'INVALID_ARGUMENT', /^after is not a kvs2 consistency token/);
    await assertFails(
      start({ after: encodeToken(logTagOf('another cluster'), new Map([[0, 1]])) }),
      'TOKEN_FROM_OTHER_LOG',
      /^after names positions in another log/,
    );
  });
});

describe('KvService.watch when the log moves on', () => {
  test('a token older than the log holds ends the watch with TOKEN_TOO_OLD, having delivered nothing', async () => {
    const node = await startLiveNode();
    try {
      const { service, log } = node;
      for (let i = 0; i < 3; i++)
        await service.set({ key: b(`old/${i}`), value: b('x'), waitForApply: true }, noDeadline());
      log.truncateBefore(0, 2);
      const session = service.watch(
        watchRequest({ after: encodeToken(service.currentLogTag(), new Map([[0, 0]])) }),
        new AbortController().signal,
      );
      await assertFails(() => session.next(), 'TOKEN_TOO_OLD', /start a new watch from now/);
    } finally {
      await node.close();
    }
  });

  test('a log recreated under the node ends the watch with LOG_RECREATED', async () => {
    const node = await startLiveNode();
    try {
      const session = node.service.watch(watchRequest({}), new AbortController().signal);
      node.log.recreate();
      await assertFails(() => session.next(), 'LOG_RECREATED');
    } finally {
      await node.close();
    }
  });
});
