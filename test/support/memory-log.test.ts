import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Kvs2Error } from '../../src/errors.js';
import type { LogBatch, LogPosition, LogRecord } from '../../src/log/log.js';
import { MemoryLog } from './memory-log.js';

const b = (text: string): Buffer => Buffer.from(text);

/** Collects records from a read until `count` arrived. */
async function readRecords(log: MemoryLog, from: Map<number, number>, count: number): Promise<LogRecord[]> {
  const stop = new AbortController();
  const records: LogRecord[] = [];
  for await (const batch of log.read(from, stop.signal)) {
    records.push(...batch.records);
    if (records.length >= count) break;
  }
  return records;
}

describe('MemoryLog', () => {
  test('appends get dense offsets per partition and read back in order, tombstones included', async () => {
    const log = new MemoryLog({ partitions: 3 });
    await log.open();
    const keys = Array.from({ length: 30 }, (_, i) => b(`k${i}`));
    const positions: LogPosition[] = [];
    for (const key of keys) positions.push(await log.append(key, key.length % 2 === 0 ? null : key));
    const ends = await log.endOffsets();
    assert.equal(
      [...ends.values()].reduce((sum, end) => sum + end, 0),
      30,
    );
    for (const [partition, end] of ends) {
      const offsets = positions.filter((p) => p.partition === partition).map((p) => p.offset);
      assert.deepEqual(
        offsets,
        Array.from({ length: end }, (_, i) => i),
      );
    }
    const records = await readRecords(log, new Map(), 30);
    for (const [i, position] of positions.entries()) {
      const record = records.find((r) => r.partition === position.partition && r.offset === position.offset);
      assert.deepEqual(record?.key, keys[i]);
    }
    await log.close();
  });

  test('a read yields records appended after it started, and ends when its signal aborts', async () => {
    const log = new MemoryLog();
    await log.open();
    const stop = new AbortController();
    const batches: LogBatch[] = [];
    const reading = (async () => {
      for await (const batch of log.read(new Map(), stop.signal)) {
        batches.push(batch);
        if (batches.length === 2) stop.abort();
      }
    })();
    await log.append(b('a'), b('1'));
    await log.append(b('b'), b('2'));
    await reading;
    assert.deepEqual(
      batches.flatMap((batch) => batch.records.map((r) => r.key?.toString())),
      ['a', 'b'],
    );
    assert.deepEqual(batches.at(-1)?.nextOffsets, new Map([[0, 2]]));
    await log.close();
  });

  test('an append whose signal aborted, before or while appends are paused, rejects and writes nothing', async () => {
    const log = new MemoryLog();
    await log.open();
    const aborted = AbortSignal.abort(new Kvs2Error('DEADLINE_EXCEEDED', 'late'));
    await assert.rejects(log.append(b('a'), b('1'), aborted), { code: 'DEADLINE_EXCEEDED' });
    log.pauseAppends();
    const cancel = new AbortController();
    const pending = log.append(b('b'), b('2'), cancel.signal);
    const kept = log.append(b('c'), b('3'));
    cancel.abort();
    await assert.rejects(pending, { code: 'CANCELLED' });
    log.resumeAppends();
    assert.deepEqual(await kept, { partition: 0, offset: 0 });
    const records = await readRecords(log, new Map(), 1);
    assert.deepEqual(
      records.map((r) => r.key?.toString()),
      ['c'],
    );
    log.failAppends(new Kvs2Error('LOG_UNAVAILABLE', 'down'));
    await assert.rejects(log.append(b('d'), b('4')), { code: 'LOG_UNAVAILABLE' });
    assert.deepEqual(await log.endOffsets(), new Map([[0, 1]]));
    await log.close();
  });

  test('without history, released records are gone: the start moves and older reads fail LOG_POSITION_LOST', async () => {
    const log = new MemoryLog({ retainsHistory: false });
    await log.open();
    for (let i = 0; i < 5; i++) await log.append(b(`k${i}`), b('v'));
    log.releaseBefore(new Map([[0, 3]]));
    assert.deepEqual(await log.startOffsets(), new Map([[0, 3]]));
    const fromStart = await readRecords(log, new Map(), 2);
    assert.deepEqual(
      fromStart.map((r) => r.offset),
      [3, 4],
    );
    await assert.rejects(readRecords(log, new Map([[0, 1]]), 1), { code: 'LOG_POSITION_LOST' });
    const kept = new MemoryLog();
    await kept.open();
    await kept.append(b('k'), b('v'));
    kept.releaseBefore(new Map([[0, 1]]));
    assert.deepEqual(await kept.startOffsets(), new Map([[0, 0]]), 'a log with history keeps it');
    await log.close();
    await kept.close();
  });

  test('recreating fails running reads with LOG_RECREATED, reopen adopts the new identity; close ends reads and appends', async () => {
    const log = new MemoryLog();
    const identity = await log.open();
    await log.append(b('a'), b('1'));
    const stop = new AbortController();
    const reading = (async () => {
      for await (const _ of log.read(new Map(), stop.signal)) log.recreate();
    })();
    await assert.rejects(reading, { code: 'LOG_RECREATED' });
    const renewed = await log.reopen();
    assert.notEqual(renewed, identity);
    assert.deepEqual(await log.endOffsets(), new Map([[0, 0]]));

    log.pauseAppends();
    const pending = log.append(b('b'), b('2'));
    const idle = readRecords(log, new Map(), 1);
    await log.close();
    await assert.rejects(pending, { code: 'SHUTTING_DOWN' });
    assert.deepEqual(await idle, []);
    await assert.rejects(log.append(b('c'), b('3')), { code: 'SHUTTING_DOWN' });
  });
});
