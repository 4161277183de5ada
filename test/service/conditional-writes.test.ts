import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Kvs2Error } from '../../src/errors.js';
import type { LogWrite, TentativeAppend } from '../../src/log/log.js';
import type { Replica } from '../../src/replica/replica.js';
import { ConditionalWrites, type TentativeLog } from '../../src/service/conditional-writes.js';
import { decodeToken } from '../../src/service/consistency-token.js';
import type { MutationRequest, WriteCondition } from '../../src/service/requests.js';
import { assertFails, b, LOCAL, noDeadline, now } from '../support/service-calls.js';
import { type ServiceNode, startLiveNode } from '../support/service-node.js';

const ABSENT: WriteCondition = { kind: 'absent' };
const PRESENT: WriteCondition = { kind: 'present' };
const version = (v: number): WriteCondition => ({ kind: 'version', version: v });

describe('conditional writes (compare-and-set) in the service, on a live replica', () => {
  let node: ServiceNode<Replica>;
  before(async () => {
    node = await startLiveNode({ partitions: 4 });
  });
  after(async () => {
    await node.close();
  });

  const read = (key: string) => now(node.service.get({ key: b(key), ...LOCAL }, noDeadline()));
  const setIf = (key: string, value: string, condition: WriteCondition, waitForApply = true) =>
    node.service.set({ key: b(key), value: b(value), waitForApply, condition }, noDeadline());

  test('create-if-absent: the first applies with a version, the second conflicts and names it', async () => {
    const first = await setIf('lock', 'owner-a', ABSENT);
    assert.equal(first.status, 'applied');
    assert.ok(first.version >= 1);
    assert.deepEqual(read('lock'), { value: b('owner-a'), version: first.version, token: read('lock').token });
    const second = await setIf('lock', 'owner-b', ABSENT);
    assert.equal(second.status, 'conflict');
    assert.equal(second.version, first.version);
    assert.deepEqual(read('lock').value, b('owner-a'));
  });

  test('a version condition applies only to the version read; a stale one conflicts and writes nothing', async () => {
    const created = await setIf('counter', '0', ABSENT);
    const updated = await setIf('counter', '1', version(created.version));
    assert.equal(updated.status, 'applied');
    assert.ok(updated.version > created.version);
    const stale = await setIf('counter', 'lost', version(created.version));
    assert.deepEqual([stale.status, stale.version], ['conflict', updated.version]);
    assert.deepEqual(read('counter').value, b('1'));
    assert.equal(read('counter').version, updated.version);
  });

  test('a conflict token lets a read see the version that won, on a node that waits for it', async () => {
    const won = await setIf('token-key', 'v', ABSENT, false);
    const lost = await setIf('token-key', 'w', ABSENT, false);
    assert.equal(lost.status, 'conflict');
    const seen = await node.service.get(
      { key: b('token-key'), consistency: 'at-least', after: [lost.token] },
      noDeadline(),
    );
    assert.equal(seen.version, won.version);
  });

  test('present and absent: a deleted key is absent, like one never written', async () => {
    assert.deepEqual(
      [(await setIf('gone', 'x', PRESENT)).status, (await setIf('gone', 'x', PRESENT)).version],
      ['conflict', 0],
    );
    const created = await setIf('gone', 'x', ABSENT);
    assert.equal((await setIf('gone', 'y', PRESENT)).status, 'applied');
    await node.service.delete({ key: b('gone'), waitForApply: true }, noDeadline());
    const afterDelete = await setIf('gone', 'z', PRESENT);
    assert.deepEqual([afterDelete.status, afterDelete.version], ['conflict', 0]);
    const recreated = await setIf('gone', 'again', ABSENT);
    assert.equal(recreated.status, 'applied');
    assert.ok(recreated.version > created.version);
  });

  test('a conditional delete removes the key only at the version given', async () => {
    const created = await setIf('doomed', 'x', ABSENT);
    const refused = await node.service.delete(
      { key: b('doomed'), waitForApply: true, condition: version(created.version + 1000) },
      noDeadline(),
    );
    assert.deepEqual([refused.status, refused.version], ['conflict', created.version]);
    assert.deepEqual(read('doomed').value, b('x'));
    const deleted = await node.service.delete(
      { key: b('doomed'), waitForApply: true, condition: version(created.version) },
      noDeadline(),
    );
    assert.deepEqual([deleted.status, deleted.version], ['applied', 0]);
    assert.equal(read('doomed').value, undefined);
  });

  test('a plain write between a read and the conditional write makes it conflict, and survives', async () => {
    const created = await setIf('contended', 'read-by-cas', ABSENT);
    const plain = await node.service.set({ key: b('contended'), value: b('plain'), waitForApply: false }, noDeadline());
    const cas = await setIf('contended', 'cas', version(created.version));
    assert.deepEqual([cas.status, cas.version], ['conflict', plain.version]);
    assert.deepEqual(read('contended').value, b('plain'));
  });

  test('N concurrent read-modify-write increments with retries end at exactly N', async () => {
    await setIf('hits', '0', ABSENT);
    const N = 40;
    let conflicts = 0;
    const increment = async (): Promise<void> => {
      for (;;) {
        const current = read('hits');
        const next = String(Number(current.value?.toString()) + 1);
        const result = await setIf('hits', next, version(current.version), false);
        if (result.status === 'applied') return;
        conflicts++;
        // Read at least what decided the conflict before trying again.
        await node.service.get({ key: b('hits'), consistency: 'at-least', after: [result.token] }, noDeadline());
      }
    };
    await Promise.all(Array.from({ length: N }, increment));
    await node.service.get({ key: b('hits'), consistency: 'latest', after: [] }, noDeadline());
    assert.equal(read('hits').value?.toString(), String(N));
    assert.ok(conflicts > 0, 'concurrent increments of one key conflicted at least once');
  });

  test('a Write with conditions is all or nothing; its results carry versions', async () => {
    // Keys that share a partition of the 4: found by the log's own partitioner.
    const keys = sharedPartitionKeys(node, 'pair', 3);
    const mutation = (key: string, value: string, condition?: WriteCondition): MutationRequest => ({
      key: b(key),
      value: b(value),
      delete: false,
      ...(condition === undefined ? {} : { condition }),
    });
    const [k0, k1, k2] = keys as [string, string, string];
    const created = await node.service.write(
      { mutations: [mutation(k0, 'a', ABSENT), mutation(k1, 'b', ABSENT)], waitForApply: true },
      noDeadline(),
    );
    assert.equal(created.status, 'applied');
    const versions = created.outcomes.map((o) => (o.ok ? o.version : -1));
    assert.equal(versions[1], (versions[0] as number) + 1);
    // One condition fails: nothing is written, not even the unconditional mutation beside it.
    const refused = await node.service.write(
      {
        mutations: [mutation(k0, 'a2', version(versions[0] as number)), mutation(k1, 'b2', ABSENT), mutation(k2, 'c')],
        waitForApply: true,
      },
      noDeadline(),
    );
    assert.equal(refused.status, 'conflict');
    assert.deepEqual(
      refused.outcomes.map((o) => (o.ok ? o.version : -1)),
      [versions[0], versions[1], 0],
    );
    assert.deepEqual([read(k0).value, read(k1).value, read(k2).value], [b('a'), b('b'), undefined]);
    const token = refused.token;
    assert.ok(token !== null && decodeToken(token).offsets.size === 1);
  });

  test('a Write whose conditional keys span partitions is refused before anything is written', async () => {
    const apart = keysOnDifferentPartitions(node);
    await assertFails(
      () =>
        node.service.write(
          {
            mutations: apart.map((key) => ({ key: b(key), value: b('v'), delete: false, condition: ABSENT })),
            waitForApply: false,
          },
          noDeadline(),
        ),
      'INVALID_ARGUMENT',
      /share a partition/,
    );
    for (const key of apart) assert.equal(read(key).value, undefined);
  });

  test('a version of 0 or beyond 2^53 is refused, pointing at CONDITION_ABSENT', async () => {
    await assertFails(() => setIf('bad', 'v', version(0)), 'INVALID_ARGUMENT', /CONDITION_ABSENT/);
    await assertFails(() => setIf('bad', 'v', version(2 ** 53)), 'INVALID_ARGUMENT', /at least 1/);
    assert.equal(read('bad').value, undefined);
  });
});

describe('conditional writes whose commit goes unanswered are resolved by reading', () => {
  let node: ServiceNode<Replica>;
  before(async () => {
    node = await startLiveNode();
  });
  after(async () => {
    await node.close();
  });

  /** The node's log, but each commit's answer is lost: `commits` says whether the commit still happens. */
  function lostAnswers(commits: boolean): TentativeLog {
    return {
      partitionOf: (key) => node.log.partitionOf(key),
      appendTentative: async (records: readonly LogWrite[], signal: AbortSignal): Promise<TentativeAppend> => {
        const tentative = await node.log.appendTentative(records, signal);
        return {
          partition: tentative.partition,
          offset: tentative.offset,
          commit: async () => {
            await (commits ? tentative.commit() : tentative.abort());
            throw new Kvs2Error('LOG_OUTCOME_UNKNOWN', 'the answer to the commit was lost');
          },
          abort: () => tentative.abort(),
        };
      },
    };
  }

  const writer = (commits: boolean) =>
    new ConditionalWrites({
      log: lostAnswers(commits),
      applied: node.replica.watermark,
      feed: node.replica.changes,
      store: node.store,
    });

  test('committed after all: APPLIED, and the value is there', async () => {
    const verdict = await writer(true).writeIf(
      [{ key: b('lost-answer'), value: b('landed'), condition: ABSENT }],
      AbortSignal.timeout(10_000),
    );
    assert.equal(verdict.applied, true);
    assert.equal(verdict.versions[0], verdict.position.offset + 1);
    assert.deepEqual(now(node.service.get({ key: b('lost-answer'), ...LOCAL }, noDeadline())).value, b('landed'));
  });

  test('discarded after all: an error that says nothing was written, and nothing is', async () => {
    // A record after it moves the replica past its offset, as a Kafka abort marker would.
    const attempt = writer(false).writeIf(
      [{ key: b('lost-abort'), value: b('never'), condition: ABSENT }],
      AbortSignal.timeout(10_000),
    );
    const moved = attempt.catch(() => {}).then(() => undefined);
    setImmediate(() => void node.service.set({ key: b('other'), value: b('x'), waitForApply: false }, noDeadline()));
    await assertFails(() => attempt, 'LOG_UNAVAILABLE', /was not committed/);
    await moved;
    assert.equal(now(node.service.get({ key: b('lost-abort'), ...LOCAL }, noDeadline())).value, undefined);
  });
});

function sharedPartitionKeys(node: ServiceNode<unknown>, prefix: string, count: number): string[] {
  const first = `${prefix}-0`;
  const partition = node.log.partitionOf(b(first));
  const keys = [first];
  for (let i = 1; keys.length < count; i++) {
    const key = `${prefix}-${i}`;
    if (node.log.partitionOf(b(key)) === partition) keys.push(key);
  }
  return keys;
}

function keysOnDifferentPartitions(node: ServiceNode<unknown>): string[] {
  const first = 'apart-0';
  for (let i = 1; ; i++) {
    const key = `apart-${i}`;
    if (node.log.partitionOf(b(key)) !== node.log.partitionOf(b(first))) return [first, key];
  }
}
