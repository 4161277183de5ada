import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { open } from 'lmdb';
import { isKvs2Error, Kvs2Error } from '../../../src/errors.js';
import { EmbeddedLog } from '../../../src/log/embedded/embedded-log.js';
import type { LogBatch, LogRecord } from '../../../src/log/log.js';
import { tempDir } from '../../support/paths.js';

/** Reads batches until `count` records arrived (or the time runs out). */
async function readRecords(
  log: EmbeddedLog,
  from: Map<number, number>,
  count: number,
): Promise<{ records: LogRecord[]; batches: LogBatch[] }> {
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), 10_000);
  const records: LogRecord[] = [];
  const batches: LogBatch[] = [];
  for await (const batch of log.read(from, stop.signal)) {
    batches.push(batch);
    records.push(...batch.records);
    if (records.length >= count) break;
  }
  clearTimeout(timer);
  return { records, batches };
}

describe('EmbeddedLog', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir('embedded-log');
  });
  after(async () => {
    await dir.remove();
  });

  test('appends get dense offsets and read back in order, tombstones and empty values kept apart', async () => {
    const log = new EmbeddedLog({ dir: `${dir.path}/order` });
    await log.open();
    const positions = [
      await log.append(Buffer.from('a'), Buffer.from('1'), AbortSignal.timeout(15_000)),
      await log.append(Buffer.from('b'), Buffer.alloc(0), AbortSignal.timeout(15_000)),
      await log.append(Buffer.from('a'), null, AbortSignal.timeout(15_000)),
    ];
    assert.deepEqual(positions, [
      { partition: 0, offset: 0 },
      { partition: 0, offset: 1 },
      { partition: 0, offset: 2 },
    ]);
    const { records, batches } = await readRecords(log, new Map(), 3);
    assert.deepEqual(
      records.map((r) => [r.offset, r.key?.toString(), r.value === null ? null : r.value.toString()]),
      [
        [0, 'a', '1'],
        [1, 'b', ''],
        [2, 'a', null],
      ],
    );
    assert.deepEqual(batches.at(-1)?.nextOffsets, new Map([[0, 3]]));
    assert.deepEqual(await log.endOffsets(AbortSignal.timeout(15_000)), new Map([[0, 3]]));
    await log.close();
  });

  test('concurrent appends share commits (group commit)', async () => {
    const path = `${dir.path}/group`;
    const log = new EmbeddedLog({ dir: path });
    await log.open();
    const before = await lastTxnId(path);
    const count = 1000;
    const positions = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        log.append(Buffer.from(`k${i}`), Buffer.from(`v${i}`), AbortSignal.timeout(15_000)),
      ),
    );
    assert.deepEqual(
      positions.map((p) => p.offset).sort((x, y) => x - y),
      Array.from({ length: count }, (_, i) => i),
    );
    await log.close();
    const commits = (await lastTxnId(path)) - before;
    assert.ok(commits < count / 10, `${count} appends took ${commits} commits`);
  });

  test('an append honours its signal: aborted before, nothing is written; aborted after, the caller is told at once', async () => {
    const log = new EmbeddedLog({ dir: `${dir.path}/abort` });
    await log.open();
    const gone = new AbortController();
    gone.abort(new Kvs2Error('CANCELLED', 'the client cancelled the call'));
    await assert.rejects(
      log.append(Buffer.from('never'), Buffer.from('written'), gone.signal),
      (error: unknown) => isKvs2Error(error) && error.code === 'CANCELLED',
    );
    assert.deepEqual(await log.endOffsets(AbortSignal.timeout(1_000)), new Map([[0, 0]]));

    // Once queued, the put commits; the caller still hears of its deadline at once, not after the sync.
    const call = new AbortController();
    const appended = log.append(Buffer.from('queued'), Buffer.from('written'), call.signal);
    call.abort(new Kvs2Error('DEADLINE_EXCEEDED', 'deadline exceeded'));
    await assert.rejects(appended, (error: unknown) => isKvs2Error(error) && error.code === 'DEADLINE_EXCEEDED');
    const { records } = await readRecords(log, new Map(), 1);
    assert.deepEqual(
      records.map((r) => [r.offset, r.key?.toString()]),
      [[0, 'queued']],
    );
    await log.close();
  });

  test('a reader waiting at the end wakes up for new appends', async () => {
    const log = new EmbeddedLog({ dir: `${dir.path}/wake` });
    await log.open();
    const reading = readRecords(log, new Map([[0, 0]]), 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await log.append(Buffer.from('late'), Buffer.from('arrival'), AbortSignal.timeout(15_000));
    const { records } = await reading;
    assert.equal(records[0]?.key?.toString(), 'late');
    await log.close();
  });

  test('a corrupt record on disk fails the read with INCONSISTENT_STATE, which no retry mends', async () => {
    const path = `${dir.path}/corrupt`;
    let log = new EmbeddedLog({ dir: path });
    await log.open();
    for (let i = 0; i < 3; i++)
      await log.append(Buffer.from(`k${i}`), Buffer.from(`v${i}`), AbortSignal.timeout(15_000));
    await log.close();
    // Offset 1 loses all but 3 bytes of its header, as a torn or damaged page would leave it.
    const env = open({ path, maxDbs: 4 });
    const records = env.openDB<Buffer, number>({ name: 'records', encoding: 'binary' });
    await records.put(1, Buffer.from([0, 0, 0]));
    await env.close();

    log = new EmbeddedLog({ dir: path });
    await log.open();
    await assert.rejects(readRecords(log, new Map([[0, 0]]), 3), (error: unknown) => {
      assert.ok(isKvs2Error(error) && error.code === 'INCONSISTENT_STATE', String(error));
      assert.match(error.message, /offset 1 is corrupt/);
      return true;
    });
    await log.close();
  });

  test('reopening keeps records, offsets and identity; reading resumes at the given offset', async () => {
    const path = `${dir.path}/reopen`;
    let log = new EmbeddedLog({ dir: path });
    const identity = await log.open();
    for (let i = 0; i < 10; i++)
      await log.append(Buffer.from(`k${i}`), Buffer.from(`v${i}`), AbortSignal.timeout(15_000));
    await log.close();

    log = new EmbeddedLog({ dir: path });
    assert.equal(await log.open(), identity);
    assert.deepEqual(await log.endOffsets(AbortSignal.timeout(15_000)), new Map([[0, 10]]));
    assert.deepEqual(await log.append(Buffer.from('k10'), Buffer.from('v10'), AbortSignal.timeout(15_000)), {
      partition: 0,
      offset: 10,
    });
    const { records } = await readRecords(log, new Map([[0, 7]]), 4);
    assert.deepEqual(
      records.map((r) => r.offset),
      [7, 8, 9, 10],
    );
    await log.close();
  });

  test('released records beyond the retained ones are deleted, offsets keep counting, reading before the start is refused', async () => {
    const path = `${dir.path}/release`;
    let log = new EmbeddedLog({ dir: path, retainRecords: 10 });
    await log.open();
    for (let i = 0; i < 100; i++)
      await log.append(Buffer.from(`k${i}`), Buffer.alloc(1000), AbortSignal.timeout(15_000));
    log.releaseBefore(new Map([[0, 100]]));
    await log.close();

    log = new EmbeddedLog({ dir: path, retainRecords: 10 });
    await log.open();
    // The last 10 applied records stay for watches to replay.
    assert.deepEqual(await log.startOffsets(), new Map([[0, 90]]));
    assert.deepEqual(await log.endOffsets(AbortSignal.timeout(15_000)), new Map([[0, 100]]));
    assert.deepEqual(await log.append(Buffer.from('next'), Buffer.from('v'), AbortSignal.timeout(15_000)), {
      partition: 0,
      offset: 100,
    });
    assert.equal(await countRecords(path), 11);
    const stop = new AbortController();
    await assert.rejects(
      async () => {
        for await (const _ of log.read(new Map([[0, 50]]), stop.signal)) break;
      },
      { code: 'LOG_POSITION_LOST' },
    );
    await log.close();
  });

  test('big batches are bounded in bytes', async () => {
    const log = new EmbeddedLog({ dir: `${dir.path}/bounded`, maxBatchBytes: 64 * 1024 });
    await log.open();
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        log.append(Buffer.from(`k${i}`), Buffer.alloc(16 * 1024, i), AbortSignal.timeout(15_000)),
      ),
    );
    const { records, batches } = await readRecords(log, new Map(), 20);
    assert.equal(records.length, 20);
    assert.ok(batches.length >= 5, `20 records of 16 KiB came in ${batches.length} batches`);
    for (const record of records) assert.equal(record.value?.[0], record.offset);
    await log.close();
  });
});

/** LMDB's own transaction counter: one per commit. */
async function lastTxnId(path: string): Promise<number> {
  const env = open({ path, readOnly: true });
  const id = (env.getStats() as { lastTxnId: number }).lastTxnId;
  await env.close();
  return id;
}

async function countRecords(path: string): Promise<number> {
  const env = open({ path, maxDbs: 4 });
  const count = env.openDB({ name: 'records', encoding: 'binary' }).getKeysCount();
  await env.close();
  return count;
}
