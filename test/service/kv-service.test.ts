import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Kvs2Error } from '../../src/errors.js';
import type { Offsets } from '../../src/offsets.js';
import type { Replica } from '../../src/replica/replica.js';
import { decodeToken, encodeToken, logTagOf } from '../../src/service/consistency-token.js';
import type { MutationRequest } from '../../src/service/requests.js';
import { FailingKeys } from '../support/failing-keys.js';
import type { MemoryLog } from '../support/memory-log.js';
import {
  assertFails,
  b,
  EMPTY,
  LOCAL,
  noDeadline,
  now,
  scanRequest,
  TestCall,
  withSignal,
} from '../support/service-calls.js';
import {
  type ServiceNode,
  type SteppedReplica,
  startLiveNode,
  startNodeBeforeReplica,
  startSteppedNode,
} from '../support/service-node.js';

const put = (key: string, value: string): MutationRequest => ({ key: b(key), value: b(value), delete: false });

async function logEnd(log: MemoryLog, partition = 0): Promise<number> {
  return (await log.endOffsets()).get(partition) ?? 0;
}

/** The token of a write: its partition read up to just past it. */
function tokenAt(node: ServiceNode<unknown>, offsets: Offsets): Buffer {
  return encodeToken(node.service.currentLogTag(), offsets);
}

describe('KvService reads and writes (live replica)', () => {
  let node: ServiceNode<Replica>;
  before(async () => {
    node = await startLiveNode();
  });
  after(async () => {
    await node.close();
  });

  test('Set publishes, its token names where the write landed, and waitForApply makes it readable at once', async () => {
    const { service } = node;
    const end = await logEnd(node.log);
    const { token } = await service.set({ key: b('greeting'), value: b('hello'), waitForApply: true }, noDeadline());
    const decoded = decodeToken(token);
    assert.deepEqual(decoded.logTag, logTagOf(node.replica.watermark.logIdentity));
    assert.deepEqual(decoded.offsets, new Map([[0, end + 1]]));
    const read = now(service.get({ key: b('greeting'), ...LOCAL }, noDeadline()));
    assert.deepEqual(read.value, b('hello'));
    // The read's token covers what the node had applied, the write included.
    assert.ok((decodeToken(read.token).offsets.get(0) ?? 0) >= end + 1);
  });

  test('a missing key reads as undefined; an empty value is a value, not a miss', async () => {
    const { service } = node;
    assert.equal(now(service.get({ key: b('never-written'), ...LOCAL }, noDeadline())).value, undefined);
    await service.set({ key: b('empty'), value: EMPTY, waitForApply: true }, noDeadline());
    assert.deepEqual(now(service.get({ key: b('empty'), ...LOCAL }, noDeadline())).value, EMPTY);
  });

  test('keys and values are arbitrary bytes, values up to --max-value-bytes stored whole', async () => {
    const { service, limits } = node;
    const key = Buffer.from([0x00, 0xff, 0xfe, 0x00, 0xc3, 0x28, 0x80]);
    const value = Buffer.concat([Buffer.from([0x00, 0x00, 0xff, 0xc0, 0xaf]), Buffer.alloc(1000, 0x80)]);
    await service.set({ key, value, waitForApply: true }, noDeadline());
    assert.deepEqual(now(service.get({ key, ...LOCAL }, noDeadline())).value, value);
    // A key that differs only after a zero byte is a different key.
    assert.equal(now(service.get({ key: key.subarray(0, 4), ...LOCAL }, noDeadline())).value, undefined);
    const big = Buffer.alloc(limits.maxValueBytes, 7);
    await service.set({ key: b('big'), value: big, waitForApply: true }, noDeadline());
    assert.ok(now(service.get({ key: b('big'), ...LOCAL }, noDeadline())).value?.equals(big));
  });

  test('a later Set replaces the value; Delete removes it, and deleting a missing key is no error', async () => {
    const { service } = node;
    await service.set({ key: b('counter'), value: b('1'), waitForApply: false }, noDeadline());
    await service.set({ key: b('counter'), value: b('2'), waitForApply: true }, noDeadline());
    assert.deepEqual(now(service.get({ key: b('counter'), ...LOCAL }, noDeadline())).value, b('2'));
    const end = await logEnd(node.log);
    const deleted = await service.delete({ key: b('counter'), waitForApply: true }, noDeadline());
    assert.deepEqual(decodeToken(deleted.token).offsets, new Map([[0, end + 1]]));
    assert.equal(now(service.get({ key: b('counter'), ...LOCAL }, noDeadline())).value, undefined);
    await service.delete({ key: b('never-there'), waitForApply: false }, noDeadline());
  });

  test('MultiGet answers one value per key in request order, duplicates included; zero keys, zero values', async () => {
    const { service } = node;
    await service.write({ mutations: [put('m1', 'one'), put('m2', 'two')], waitForApply: true }, noDeadline());
    const read = now(service.multiGet({ keys: ['m2', 'missing', 'm1', 'm2'].map(b), ...LOCAL }, noDeadline()));
    assert.deepEqual(read.values, [b('two'), undefined, b('one'), b('two')]);
    assert.deepEqual(now(service.multiGet({ keys: [], ...LOCAL }, noDeadline())).values, []);
  });

  test('500 concurrent Sets are all published; a read after all their tokens sees every one', async () => {
    const { service } = node;
    const keys = Array.from({ length: 500 }, (_, i) => b(`concurrent-${i}`));
    const written = await Promise.all(
      keys.map((key, i) => service.set({ key, value: b(`value-${i}`), waitForApply: false }, noDeadline())),
    );
    assert.equal(new Set(written.map((w) => w.token.toString('hex'))).size, 500, 'each write its own position');
    const read = await service.multiGet(
      { keys, consistency: 'at-least', after: written.map((w) => w.token) },
      noDeadline(),
    );
    assert.deepEqual(
      read.values,
      keys.map((_, i) => b(`value-${i}`)),
    );
  });

  test('Write publishes every mutation, reports each, and one token covers them all', async () => {
    const { service } = node;
    await service.set({ key: b('w-del'), value: b('x'), waitForApply: true }, noDeadline());
    const end = await logEnd(node.log);
    const mutations = [
      ...Array.from({ length: 100 }, (_, i) => put(`w-${i}`, `v${i}`)),
      { key: b('w-del'), value: EMPTY, delete: true },
      put('w-empty', ''),
    ];
    const result = await service.write({ mutations, waitForApply: true }, noDeadline());
    assert.equal(result.outcomes.length, mutations.length);
    const offsets = result.outcomes.map((outcome) => {
      assert.ok(outcome.ok);
      return decodeToken(outcome.token).offsets.get(0) ?? 0;
    });
    assert.deepEqual(
      [...offsets].sort((x, y) => x - y),
      mutations.map((_, i) => end + i + 1),
    );
    assert.ok(result.token);
    assert.deepEqual(decodeToken(result.token).offsets, new Map([[0, end + mutations.length]]));
    const read = now(service.multiGet({ keys: ['w-0', 'w-99', 'w-del', 'w-empty'].map(b), ...LOCAL }, noDeadline()));
    assert.deepEqual(read.values, [b('v0'), b('v99'), undefined, EMPTY]);
  });

  test('a Write of no mutations publishes nothing and has no token', async () => {
    const result = await node.service.write({ mutations: [], waitForApply: true }, noDeadline());
    assert.deepEqual(result, { status: 'published', outcomes: [], token: null });
  });

  describe('every field is checked, and the error names it', () => {
    const tooLongKey = (): Buffer => Buffer.alloc(node.limits.maxKeyBytes + 1, 'k');

    test('keys of Get, Set, Delete and MultiGet: empty, or over --max-key-bytes (at the limit is fine)', async () => {
      const { service, limits } = node;
      const ctx = noDeadline();
      await assertFails(() => service.get({ key: EMPTY, ...LOCAL }, ctx), 'INVALID_ARGUMENT', /^key is empty/);
      await assertFails(
        () => service.set({ key: EMPTY, value: b('v'), waitForApply: false }, ctx),
        'INVALID_ARGUMENT',
        /^key is empty/,
      );
      await assertFails(
        () => service.delete({ key: EMPTY, waitForApply: false }, ctx),
        'INVALID_ARGUMENT',
        /^key is empty/,
      );
      await assertFails(
        () => service.multiGet({ keys: [b('a'), EMPTY], ...LOCAL }, ctx),
        'INVALID_ARGUMENT',
        /^keys\[1\] is empty/,
      );
      const over = new RegExp(
        `is ${limits.maxKeyBytes + 1} bytes; at most ${limits.maxKeyBytes} are allowed \\(--max-key-bytes\\)`,
      );
      await assertFails(
        () => service.get({ key: tooLongKey(), ...LOCAL }, ctx),
        'INVALID_ARGUMENT',
        new RegExp(`^key ${over.source}`),
      );
      await assertFails(
        () => service.set({ key: tooLongKey(), value: b('v'), waitForApply: false }, ctx),
        'INVALID_ARGUMENT',
        /^key is/,
      );
      await assertFails(
        () => service.delete({ key: tooLongKey(), waitForApply: false }, ctx),
        'INVALID_ARGUMENT',
        /^key is/,
      );
      await assertFails(
        () => service.multiGet({ keys: [tooLongKey()], ...LOCAL }, ctx),
        'INVALID_ARGUMENT',
        new RegExp(`^keys\\[0\\] ${over.source}`),
      );
      const atLimit = Buffer.alloc(limits.maxKeyBytes, 'k');
      await service.set({ key: atLimit, value: b('v'), waitForApply: true }, ctx);
      assert.deepEqual(now(service.get({ key: atLimit, ...LOCAL }, ctx)).value, b('v'));
    });

    test('a value over --max-value-bytes is refused and not published', async () => {
      const { service, limits, log } = node;
      const end = await logEnd(log);
      await assertFails(
        () =>
          service.set(
            { key: b('too-big'), value: Buffer.alloc(limits.maxValueBytes + 1), waitForApply: false },
            noDeadline(),
          ),
        'INVALID_ARGUMENT',
        new RegExp(
          `^value is ${limits.maxValueBytes + 1} bytes; at most ${limits.maxValueBytes} are allowed \\(--max-value-bytes\\)`,
        ),
      );
      assert.equal(await logEnd(log), end);
    });

    test('MultiGet and Write over --max-batch-keys', async () => {
      const { service, limits } = node;
      const keys = Array.from({ length: limits.maxBatchKeys + 1 }, (_, i) => b(`k${i}`));
      await assertFails(
        () => service.multiGet({ keys, ...LOCAL }, noDeadline()),
        'INVALID_ARGUMENT',
        new RegExp(`^MultiGet asked for ${keys.length} keys; at most ${limits.maxBatchKeys}`),
      );
      assert.equal(
        now(service.multiGet({ keys: keys.slice(1), ...LOCAL }, noDeadline())).values.length,
        limits.maxBatchKeys,
      );
      await assertFails(
        () =>
          service.write(
            { mutations: keys.map((key) => ({ key, value: EMPTY, delete: false })), waitForApply: false },
            noDeadline(),
          ),
        'INVALID_ARGUMENT',
        new RegExp(`^Write asked for ${keys.length} mutations; at most ${limits.maxBatchKeys}`),
      );
    });

    test('one invalid mutation rejects the whole Write and nothing is published', async () => {
      const { service, limits, log } = node;
      const end = await logEnd(log);
      const write = (bad: MutationRequest) => () =>
        service.write({ mutations: [put('w-bad-ok', 'x'), bad], waitForApply: false }, noDeadline());
      await assertFails(
        write({ key: EMPTY, value: b('x'), delete: false }),
        'INVALID_ARGUMENT',
        /^mutations\[1\]\.key is empty/,
      );
      await assertFails(
        write({ key: tooLongKey(), value: b('x'), delete: false }),
        'INVALID_ARGUMENT',
        /^mutations\[1\]\.key is/,
      );
      await assertFails(
        write({ key: b('k'), value: Buffer.alloc(limits.maxValueBytes + 1), delete: false }),
        'INVALID_ARGUMENT',
        /^mutations\[1\]\.value is/,
      );
      await assertFails(
        write({ key: b('k'), value: b('x'), delete: true }),
        'INVALID_ARGUMENT',
        /^mutations\[1\] is a delete with a value/,
      );
      assert.equal(await logEnd(log), end);
      assert.equal(now(service.get({ key: b('w-bad-ok'), ...LOCAL }, noDeadline())).value, undefined);
    });

    test('read options: at-least without tokens, too many tokens, a token too long, a malformed token', async () => {
      const { service } = node;
      const get = (consistency: 'local' | 'at-least' | 'latest', after: Buffer[]) => () =>
        service.get({ key: b('k'), consistency, after }, noDeadline());
      await assertFails(
        get('at-least', []),
        'INVALID_ARGUMENT',
        /CONSISTENCY_AT_LEAST needs at least one token in `after`/,
      );
      const token = tokenAt(node, new Map([[0, 0]]));
      await assertFails(
        get('local', Array(1001).fill(token)),
        'INVALID_ARGUMENT',
        /^after has 1001 tokens; at most 1000/,
      );
      await assertFails(
        get('at-least', [token, Buffer.alloc(1024 * 1024 + 1)]),
        'INVALID_ARGUMENT',
        /^after\[1\] is 1048577 bytes; no token is longer than 1048576/,
      );
      await assertFails(get('at-least', [b('garbage')]), 'INVALID_ARGUMENT', /^after is not a kvs2 consistency token/);
      await assertFails(
        get('latest', [token, b('garbage!garbage')]),
        'INVALID_ARGUMENT',
        /^after\[1\] is not a kvs2 consistency token/,
      );
      // The same checks guard MultiGet and Scan.
      await assertFails(
        () => service.multiGet({ keys: [b('k')], consistency: 'at-least', after: [] }, noDeadline()),
        'INVALID_ARGUMENT',
        /CONSISTENCY_AT_LEAST/,
      );
      await assertFails(
        () => service.scan(scanRequest({ after: [b('x')] }), noDeadline()),
        'INVALID_ARGUMENT',
        /^after is not a kvs2 consistency token/,
      );
    });

    test('tokens of another log are refused with TOKEN_FROM_OTHER_LOG, whatever the consistency', async () => {
      const { service } = node;
      const foreign = encodeToken(logTagOf('another cluster'), new Map([[0, 1]]));
      for (const consistency of ['local', 'at-least', 'latest'] as const) {
        await assertFails(
          () => service.get({ key: b('k'), consistency, after: [foreign] }, noDeadline()),
          'TOKEN_FROM_OTHER_LOG',
          /^after names positions in another log/,
        );
      }
      await assertFails(
        () =>
          service.multiGet(
            { keys: [b('k')], consistency: 'at-least', after: [tokenAt(node, new Map()), foreign] },
            noDeadline(),
          ),
        'TOKEN_FROM_OTHER_LOG',
        /^after\[1\] names positions in another log/,
      );
    });
  });

  describe('consistency', () => {
    test('a local read is answered synchronously, without a promise', () => {
      const { service } = node;
      const scan = { prefix: b('m'), start: EMPTY, end: EMPTY, limit: 0, keysOnly: false, continuation: EMPTY };
      assert.ok(!(service.get({ key: b('k'), ...LOCAL }, noDeadline()) instanceof Promise));
      assert.ok(!(service.multiGet({ keys: [b('k')], ...LOCAL }, noDeadline()) instanceof Promise));
      assert.ok(!(service.scan({ ...scan, ...LOCAL }, noDeadline()) instanceof Promise));
    });

    test('a read after a token waits until the replica has applied it', async () => {
      const { service, log } = node;
      // A local read given tokens honours them too: a client that passes them wants them seen.
      for (const consistency of ['at-least', 'local'] as const) {
        const key = b(`awaited-${consistency}`);
        // A token one record past the log's end: the write it names has not happened yet.
        const ahead = tokenAt(node, new Map([[0, (await logEnd(log)) + 1]]));
        const read = service.get({ key, consistency, after: [ahead] }, noDeadline());
        assert.ok(read instanceof Promise);
        await service.set({ key, value: b('here'), waitForApply: false }, noDeadline());
        assert.deepEqual((await read).value, b('here'));
      }
    });

    test('a read waiting for a token ends with the signal: DEADLINE_EXCEEDED on a deadline, CANCELLED on a cancel', async () => {
      const { service, log } = node;
      const far = tokenAt(node, new Map([[0, (await logEnd(log)) + 1_000_000]]));
      const read = (signal: AbortSignal) => () =>
        service.get({ key: b('future'), consistency: 'at-least', after: [far] }, withSignal(signal));
      await assertFails(read(AbortSignal.timeout(10)), 'DEADLINE_EXCEEDED');
      const cancel = new AbortController();
      const cancelled = assertFails(read(cancel.signal), 'CANCELLED');
      cancel.abort();
      await cancelled;
      await assertFails(read(AbortSignal.abort()), 'CANCELLED');
      const scan = { prefix: EMPTY, start: EMPTY, end: EMPTY, limit: 0, keysOnly: false, continuation: EMPTY };
      await assertFails(
        () => service.scan({ ...scan, consistency: 'at-least', after: [far] }, withSignal(AbortSignal.timeout(10))),
        'DEADLINE_EXCEEDED',
      );
    });
  });

  describe('Write where appends fail', () => {
    let faulty: ServiceNode<Replica>;
    let appender: FailingKeys;
    before(async () => {
      faulty = await startLiveNode({
        appender: (log) => {
          appender = new FailingKeys(log);
          return appender;
        },
      });
    });
    after(async () => {
      await faulty.close();
    });

    test('each mutation reports its own outcome; the token covers only what was published', async () => {
      const { service, log } = faulty;
      appender.failing.set('fails', new Kvs2Error('LOG_UNAVAILABLE', 'the partition has no leader'));
      appender.failing.set('throws', new Error('socket hang up'));
      const result = await service.write(
        { mutations: [put('ok-1', 'a'), put('fails', 'b'), put('ok-2', 'c'), put('throws', 'd')], waitForApply: true },
        noDeadline(),
      );
      const [first, second, third, fourth] = result.outcomes;
      assert.ok(first?.ok && third?.ok);
      assert.ok(second !== undefined && !second.ok);
      assert.equal(second.error.code, 'LOG_UNAVAILABLE');
      assert.match(second.error.message, /no leader/);
      // Anything else a log throws becomes LOG_UNAVAILABLE too, with its message.
      assert.ok(fourth !== undefined && !fourth.ok);
      assert.equal(fourth.error.code, 'LOG_UNAVAILABLE');
      assert.match(fourth.error.message, /socket hang up/);
      assert.equal(await logEnd(log), 2);
      assert.ok(result.token);
      assert.deepEqual(decodeToken(result.token).offsets, new Map([[0, 2]]));
      const read = now(service.multiGet({ keys: ['ok-1', 'fails', 'ok-2', 'throws'].map(b), ...LOCAL }, noDeadline()));
      assert.deepEqual(read.values, [b('a'), undefined, b('c'), undefined]);
    });

    test('when every append fails, the Write still answers, with no token', async () => {
      appender.failing.set('alone', new Kvs2Error('LOG_UNAVAILABLE', 'down'));
      const result = await faulty.service.write({ mutations: [put('alone', 'x')], waitForApply: true }, noDeadline());
      assert.equal(result.token, null);
      assert.equal(result.outcomes[0]?.ok, false);
    });

    test('a failed Set rejects with the log error', async () => {
      appender.failing.set('set-fails', new Kvs2Error('LOG_UNAVAILABLE', 'down'));
      await assertFails(
        () => faulty.service.set({ key: b('set-fails'), value: b('x'), waitForApply: false }, noDeadline()),
        'LOG_UNAVAILABLE',
      );
    });
  });
});

describe('KvService with a replica that lags behind the log (stepped)', () => {
  let node: ServiceNode<SteppedReplica>;
  before(async () => {
    node = await startSteppedNode();
  });
  after(async () => {
    await node.close();
  });

  test('a local read answers what is applied; a latest read waits for everything the log held when it came', async () => {
    const { service, log, replica } = node;
    // Another node's write: in the log, not yet applied here.
    await log.append(b('latest'), b('from elsewhere'));
    assert.equal(now(service.get({ key: b('latest'), ...LOCAL }, noDeadline())).value, undefined);
    const latest = service.get({ key: b('latest'), consistency: 'latest', after: [] }, noDeadline());
    assert.ok(latest instanceof Promise);
    await replica.applyAll();
    const read = await latest;
    assert.deepEqual(read.value, b('from elsewhere'));
    assert.deepEqual(decodeToken(read.token).offsets, new Map([[0, await logEnd(log)]]));
  });

  test('a latest read on a log with nothing new waits for nothing', async () => {
    const { service, replica } = node;
    await replica.applyAll();
    assert.equal(
      (await service.get({ key: b('nothing'), consistency: 'latest', after: [] }, noDeadline())).value,
      undefined,
    );
  });

  test('waitForApply answers only once the replica applied the write', async () => {
    const { service, store, replica } = node;
    await service.set({ key: b('wfa-delete'), value: b('0'), waitForApply: false }, noDeadline());
    await replica.applyAll();
    // What the store holds at the moment each call answers.
    const setSeen = service
      .set({ key: b('wfa-set'), value: b('1'), waitForApply: true }, noDeadline())
      .then(() => store.get(b('wfa-set')));
    const writeSeen = service
      .write({ mutations: [put('wfa-write', '2')], waitForApply: true }, noDeadline())
      .then(() => store.get(b('wfa-write')));
    const deleteSeen = service
      .delete({ key: b('wfa-delete'), waitForApply: true }, noDeadline())
      .then(() => store.get(b('wfa-delete')));
    await replica.applyAll();
    assert.deepEqual(await setSeen, b('1'));
    assert.deepEqual(await writeSeen, b('2'));
    assert.equal(await deleteSeen, undefined);
  });

  test('waitForApply honours the signal: the write is published, the wait ends DEADLINE_EXCEEDED', async () => {
    const { service, log, replica } = node;
    await replica.applyAll();
    const end = await logEnd(log);
    await assertFails(
      () => service.set({ key: b('wfa-late'), value: b('x'), waitForApply: true }, withSignal(AbortSignal.timeout(10))),
      'DEADLINE_EXCEEDED',
    );
    assert.equal(await logEnd(log), end + 1, 'published: a timed-out write may still land');
    await replica.applyAll();
  });

  test('the answer token of a read is what the replica had applied, cached until it moves', async () => {
    const { service, replica } = node;
    await replica.applyAll();
    const first = service.appliedToken();
    assert.equal(service.appliedToken(), first, 'the same buffer while nothing moved');
    await service.set({ key: b('moves'), value: b('x'), waitForApply: false }, noDeadline());
    assert.equal(service.appliedToken(), first);
    await replica.applyAll();
    const moved = service.appliedToken();
    assert.notDeepEqual(moved, first);
    assert.deepEqual(decodeToken(moved).offsets, replica.watermark.appliedOffsets);
    assert.deepEqual(now(service.get({ key: b('moves'), ...LOCAL }, noDeadline())).token, moved);
  });
});

describe('KvService MultiGet over --max-reply-bytes', () => {
  test('is REPLY_TOO_LARGE, naming the key where the reply outgrew the limit', async () => {
    const node = await startSteppedNode({ limits: { maxReplyBytes: 4096 } });
    try {
      for (let i = 0; i < 3; i++) await node.log.append(b(`r${i}`), Buffer.alloc(1500, i));
      await node.replica.applyAll();
      const keys = ['r0', 'r1', 'r2'].map(b);
      await assertFails(
        () => node.service.multiGet({ keys, ...LOCAL }, noDeadline()),
        'REPLY_TOO_LARGE',
        /more than 4096 bytes of keys and values \(reached at keys\[2\]\)/,
      );
      // Missing keys count for their key only; two values fit.
      const fits = now(
        node.service.multiGet({ keys: [keys[0] as Buffer, b('missing'), keys[1] as Buffer], ...LOCAL }, noDeadline()),
      );
      assert.deepEqual(
        fits.values.map((value) => value?.length),
        [1500, undefined, 1500],
      );
    } finally {
      await node.close();
    }
  });
});

describe('KvService reply budget (--max-reply-bytes-in-flight)', () => {
  test('reads beyond it are OVERLOADED until the calls holding it end; scan pages shrink first', async () => {
    // Each value is 2,500 bytes, and each call holds 1 KiB more: one two-value reply fits, not two.
    const node = await startSteppedNode({ maxReplyBytesInFlight: 10 * 1024 });
    try {
      const { service, log, replica } = node;
      for (let i = 0; i < 4; i++) await log.append(b(`heavy/${i}`), Buffer.alloc(2500, i));
      await replica.applyAll();
      const pair = (first: number) => ({ keys: [b(`heavy/${first}`), b(`heavy/${first + 1}`)], ...LOCAL });
      const held = new TestCall();
      assert.equal(now(service.multiGet(pair(0), held)).values.length, 2);
      const second = new TestCall();
      await assertFails(() => service.multiGet(pair(2), second), 'OVERLOADED', /retry later/);
      // A scan still answers, with a page as small as the room left: any page size is valid.
      const scan = { prefix: b('heavy/'), start: EMPTY, end: EMPTY, limit: 0, keysOnly: false, continuation: EMPTY };
      const page = now(service.scan({ ...scan, ...LOCAL }, second));
      assert.deepEqual(
        page.items.map((item) => item.key),
        [b('heavy/0')],
      );
      assert.deepEqual(page.continuation, b('heavy/0'));
      await assertFails(() => service.get({ key: b('heavy/3'), ...LOCAL }, second), 'OVERLOADED');
      second.end();
      held.end();
      const after = new TestCall();
      assert.equal(now(service.multiGet(pair(2), after)).values.length, 2);
      after.end();
    } finally {
      await node.close();
    }
  });
});

describe('KvService when a write is aborted', () => {
  let node: ServiceNode<Replica>;
  before(async () => {
    node = await startLiveNode();
  });
  after(async () => {
    node.log.resumeAppends();
    await node.close();
  });

  test('a cancelled Write fails as a whole and nothing is appended after the abort', async () => {
    const { service, log } = node;
    const end = await logEnd(log);
    log.pauseAppends();
    const cancel = new AbortController();
    const write = service.write(
      { mutations: [put('abort-1', 'a'), put('abort-2', 'b'), put('abort-3', 'c')], waitForApply: false },
      withSignal(cancel.signal),
    );
    cancel.abort();
    try {
      await assertFails(() => write, 'CANCELLED');
    } finally {
      log.resumeAppends();
    }
    assert.equal(await logEnd(log), end);
  });

  test('a Write and a Set past their deadline fail DEADLINE_EXCEEDED and append nothing', async () => {
    const { service, log } = node;
    const end = await logEnd(log);
    log.pauseAppends();
    try {
      await assertFails(
        () =>
          service.write(
            { mutations: [put('late-1', 'a'), put('late-2', 'b')], waitForApply: false },
            withSignal(AbortSignal.timeout(10)),
          ),
        'DEADLINE_EXCEEDED',
      );
      await assertFails(
        () =>
          service.set({ key: b('late-3'), value: b('c'), waitForApply: false }, withSignal(AbortSignal.timeout(10))),
        'DEADLINE_EXCEEDED',
      );
    } finally {
      log.resumeAppends();
    }
    assert.equal(await logEnd(log), end);
  });

  test('a call whose signal aborted before it began appends nothing', async () => {
    const { service, log } = node;
    const end = await logEnd(log);
    const aborted = withSignal(AbortSignal.abort());
    await assertFails(() => service.set({ key: b('pre-1'), value: b('a'), waitForApply: false }, aborted), 'CANCELLED');
    await assertFails(() => service.delete({ key: b('pre-2'), waitForApply: false }, aborted), 'CANCELLED');
    await assertFails(
      () => service.write({ mutations: [put('pre-3', 'c')], waitForApply: false }, aborted),
      'CANCELLED',
    );
    assert.equal(await logEnd(log), end);
  });
});

describe('KvService after close()', () => {
  test('writes fail SHUTTING_DOWN and publish nothing; reads go on', async () => {
    const node = await startLiveNode();
    try {
      const { service, log } = node;
      await service.set({ key: b('kept'), value: b('v'), waitForApply: true }, noDeadline());
      service.close();
      const end = await logEnd(log);
      await assertFails(
        () => service.set({ key: b('k'), value: b('v'), waitForApply: false }, noDeadline()),
        'SHUTTING_DOWN',
      );
      await assertFails(() => service.delete({ key: b('kept'), waitForApply: false }, noDeadline()), 'SHUTTING_DOWN');
      await assertFails(
        () => service.write({ mutations: [put('k', 'v')], waitForApply: false }, noDeadline()),
        'SHUTTING_DOWN',
      );
      assert.equal(await logEnd(log), end);
      assert.deepEqual(now(service.get({ key: b('kept'), ...LOCAL }, noDeadline())).value, b('v'));
      assert.deepEqual(now(service.multiGet({ keys: [b('kept')], ...LOCAL }, noDeadline())).values, [b('v')]);
      const scan = { prefix: b('kept'), start: EMPTY, end: EMPTY, limit: 0, keysOnly: true, continuation: EMPTY };
      assert.equal(now(service.scan({ ...scan, ...LOCAL }, noDeadline())).items.length, 1);
      const latest = await service.get({ key: b('kept'), consistency: 'latest', after: [] }, noDeadline());
      assert.deepEqual(latest.value, b('v'));
    } finally {
      await node.close();
    }
  });
});

describe('KvService on a node whose replica has not begun reading yet', () => {
  test("a write's token names the log it went to, not the empty store's none: a read given it succeeds", async () => {
    const node = await startNodeBeforeReplica();
    try {
      const { service, replica, log } = node;
      assert.equal(replica.watermark.logIdentity, '', 'an empty store names no log until the replica reads one');
      const setting = service.set({ key: b('early'), value: b('bird'), waitForApply: false }, noDeadline());
      const writing = service.write({ mutations: [put('early-batch', 'worm')], waitForApply: false }, noDeadline());
      // Both land in the log; their answers wait for the replica to name it.
      while ((await logEnd(log)) < 2) await new Promise((resolve) => setImmediate(resolve));
      await replica.start(await log.open());
      const { token } = await setting;
      const written = await writing;
      const expected = logTagOf(await log.open());
      assert.deepEqual(decodeToken(token).logTag, expected);
      assert.ok(written.token !== null);
      assert.deepEqual(decodeToken(written.token).logTag, expected);
      const outcome = written.outcomes[0];
      assert.ok(outcome?.ok);
      assert.deepEqual(decodeToken(outcome.token).logTag, expected);
      const read = await service.get({ key: b('early'), consistency: 'at-least', after: [token] }, noDeadline());
      assert.deepEqual(read.value, b('bird'));
      const batchRead = await service.get(
        { key: b('early-batch'), consistency: 'at-least', after: [written.token] },
        noDeadline(),
      );
      assert.deepEqual(batchRead.value, b('worm'));
    } finally {
      await node.close();
    }
  });

  test('a write waiting for the replica to name the log ends with its deadline', async () => {
    const node = await startNodeBeforeReplica();
    try {
      const { service } = node;
      await assertFails(
        () =>
          service.set(
            { key: b('late'), value: b('never answered'), waitForApply: false },
            withSignal(AbortSignal.timeout(50)),
          ),
        'DEADLINE_EXCEEDED',
      );
    } finally {
      await node.close();
    }
  });
});
