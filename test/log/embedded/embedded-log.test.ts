import assert from 'node:assert/strict';
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { crc32 } from 'node:zlib';
import { open } from 'lmdb';
import { isKvs2Error, Kvs2Error } from '../../../src/errors.js';
import { EmbeddedLog } from '../../../src/log/embedded/embedded-log.js';
import { checkFrame, encodeFrame, isFrameFault } from '../../../src/log/embedded/frame-codec.js';
import { encodeRecord } from '../../../src/log/embedded/record-codec.js';
import { listSegments } from '../../../src/log/embedded/segment-scan.js';
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
    const { frames, records } = onDisk(path);
    assert.equal(records, count);
    assert.ok(frames < count / 10, `${count} appends took ${frames} frames (one sync each)`);
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

    // Queued but not yet taken by the writer: the abort keeps the record off the disk.
    const early = new AbortController();
    const dropped = log.append(Buffer.from('dropped'), Buffer.from('never written'), early.signal);
    early.abort(new Kvs2Error('DEADLINE_EXCEEDED', 'deadline exceeded'));
    await assert.rejects(dropped, (error: unknown) => isKvs2Error(error) && error.code === 'DEADLINE_EXCEEDED');

    // Taken by the writer (it starts on the next turn of the event loop): the record is written with its
    // frame, and the caller still hears of its deadline at once, not after the sync.
    const call = new AbortController();
    const appended = log.append(Buffer.from('queued'), Buffer.from('written'), call.signal);
    await new Promise((resolve) => setImmediate(resolve));
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
    await log.append(Buffer.from('k0'), Buffer.from('v0'), AbortSignal.timeout(15_000));
    await log.close();
    // A frame whose checksum holds but whose record at offset 1 has lost all but 3 bytes of its header,
    // as a bug in a writer would leave it.
    const frame = encodeFrame(1, [{ key: Buffer.from('k1'), value: Buffer.from('v1') }]);
    const bad = Buffer.concat([frame.subarray(0, 20), Buffer.from([0, 0, 0, 3, 0, 0, 0])]);
    bad.writeUInt32BE(bad.length - 8, 0);
    bad.writeUInt32BE(crc32(bad.subarray(8)), 4);
    appendFileSync(onlySegment(path), bad);
    await appendWhole(path, 2, 'k2');

    log = new EmbeddedLog({ dir: path });
    await log.open();
    await assert.rejects(readRecords(log, new Map([[0, 0]]), 3), (error: unknown) => {
      assert.ok(isKvs2Error(error) && error.code === 'INCONSISTENT_STATE', String(error));
      assert.match(error.message, /offset 1 is corrupt/);
      return true;
    });
    await log.close();
  });

  test('a damaged frame with data after it is INCONSISTENT_STATE at open, never served around', async () => {
    const path = `${dir.path}/damaged-middle`;
    const log = new EmbeddedLog({ dir: path });
    await log.open();
    for (let i = 0; i < 3; i++)
      await log.append(Buffer.from(`k${i}`), Buffer.from(`v${i}`), AbortSignal.timeout(15_000));
    await log.close();
    const segment = onlySegment(path);
    const bytes = readFileSync(segment);
    // A flipped bit in the value of the middle frame (offset 1): its checksum no longer holds.
    const middle = frameStarts(bytes)[1] as number;
    bytes[middle + 30] = (bytes[middle + 30] ?? 0) ^ 0x01;
    writeFileSync(segment, bytes);

    await assert.rejects(new EmbeddedLog({ dir: path }).open(), (error: unknown) => {
      assert.ok(isKvs2Error(error) && error.code === 'INCONSISTENT_STATE', String(error));
      assert.match(error.message, /checksum/);
      return true;
    });
    // Nothing was cut off: the damage stays for a person to look at.
    assert.deepEqual(readFileSync(segment), bytes);
  });

  test('a damaged frame in a sealed segment is INCONSISTENT_STATE even at its end', async () => {
    const path = `${dir.path}/damaged-sealed`;
    const log = new EmbeddedLog({ dir: path, segmentBytes: 1 });
    await log.open();
    for (let i = 0; i < 3; i++)
      await log.append(Buffer.from(`k${i}`), Buffer.from(`v${i}`), AbortSignal.timeout(15_000));
    await log.close();
    const first = listSegments(path)[0]?.path as string;
    const bytes = readFileSync(first);
    writeFileSync(first, bytes.subarray(0, bytes.length - 1));
    await assert.rejects(new EmbeddedLog({ dir: path, segmentBytes: 1 }).open(), {
      code: 'INCONSISTENT_STATE',
    });
  });

  for (const [name, tear] of [
    ['a frame cut off by the end of the file', (frame: Buffer) => frame.subarray(0, frame.length - 5)],
    ['a header cut off', (frame: Buffer) => frame.subarray(0, 3)],
    ['a whole last frame whose checksum fails', (frame: Buffer) => flipByte(frame, frame.length - 1)],
    ['zeros where a frame was to go', (frame: Buffer) => Buffer.alloc(frame.length)],
  ] as const) {
    test(`a torn tail (${name}) is cut off on open, never served, and appends go on from there`, async () => {
      const path = `${dir.path}/torn-${name.replaceAll(' ', '-')}`;
      let log = new EmbeddedLog({ dir: path });
      await log.open();
      for (let i = 0; i < 3; i++)
        await log.append(Buffer.from(`k${i}`), Buffer.from(`v${i}`), AbortSignal.timeout(15_000));
      await log.close();
      const segment = onlySegment(path);
      const whole = readFileSync(segment).length;
      appendFileSync(segment, tear(encodeFrame(3, [{ key: Buffer.from('torn'), value: Buffer.from('never') }])));

      log = new EmbeddedLog({ dir: path });
      await log.open();
      assert.equal(readFileSync(segment).length, whole);
      assert.deepEqual(await log.endOffsets(AbortSignal.timeout(15_000)), new Map([[0, 3]]));
      assert.deepEqual(await log.append(Buffer.from('k3'), Buffer.from('v3'), AbortSignal.timeout(15_000)), {
        partition: 0,
        offset: 3,
      });
      const { records } = await readRecords(log, new Map([[0, 0]]), 4);
      assert.deepEqual(
        records.map((r) => [r.offset, r.key?.toString(), r.value?.toString()]),
        [
          [0, 'k0', 'v0'],
          [1, 'k1', 'v1'],
          [2, 'k2', 'v2'],
          [3, 'k3', 'v3'],
        ],
      );
      await log.close();
    });
  }

  test('a log of the earlier LMDB format is migrated: identity, start, offsets and gaps kept, LMDB files gone', async () => {
    const path = `${dir.path}/migrate`;
    const env = open({ path, maxDbs: 4 });
    const oldRecords = env.openDB<Buffer, number>({ name: 'records', encoding: 'binary' });
    const meta = env.openDB<unknown, string>({ name: 'meta' });
    await meta.put('identity', 'b1946ac9-2e4c-4a52-8b0e-3bd6f2c7d0aa');
    await meta.put('startOffset', 5);
    // Offset 7 is a gap (an append that failed), 9 a tombstone.
    for (const [offset, value] of [
      [5, Buffer.from('v5')],
      [6, Buffer.alloc(0)],
      [8, Buffer.from('v8')],
      [9, null],
    ] as const) {
      await oldRecords.put(offset, encodeRecord(Buffer.from(`k${offset}`), value));
    }
    await env.close();

    const log = new EmbeddedLog({ dir: path });
    assert.equal(await log.open(), 'embedded:b1946ac9-2e4c-4a52-8b0e-3bd6f2c7d0aa');
    assert.equal(existsSync(join(path, 'data.mdb')), false);
    assert.equal(existsSync(join(path, 'lock.mdb')), false);
    assert.deepEqual(await log.startOffsets(), new Map([[0, 5]]));
    assert.deepEqual(await log.endOffsets(AbortSignal.timeout(15_000)), new Map([[0, 10]]));
    const { records, batches } = await readRecords(log, new Map([[0, 5]]), 4);
    assert.deepEqual(
      records.map((r) => [r.offset, r.key?.toString(), r.value === null ? null : r.value.toString()]),
      [
        [5, 'k5', 'v5'],
        [6, 'k6', ''],
        [8, 'k8', 'v8'],
        [9, 'k9', null],
      ],
    );
    assert.deepEqual(batches.at(-1)?.nextOffsets, new Map([[0, 10]]));
    assert.deepEqual(await log.append(Buffer.from('k10'), Buffer.from('v10'), AbortSignal.timeout(15_000)), {
      partition: 0,
      offset: 10,
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
    // One frame a segment, so that releases can delete exactly up to the retained records.
    let log = new EmbeddedLog({ dir: path, retainRecords: 10, segmentBytes: 1 });
    await log.open();
    for (let i = 0; i < 100; i++)
      await log.append(Buffer.from(`k${i}`), Buffer.alloc(1000), AbortSignal.timeout(15_000));
    log.releaseBefore(new Map([[0, 100]]));
    await log.close();
    // The deletions run in the background; they are done once the files are gone.
    await eventually(() => onDisk(path).records === 10);

    log = new EmbeddedLog({ dir: path, retainRecords: 10, segmentBytes: 1 });
    await log.open();
    // The last 10 applied records stay for watches to replay.
    assert.deepEqual(await log.startOffsets(), new Map([[0, 90]]));
    assert.deepEqual(await log.endOffsets(AbortSignal.timeout(15_000)), new Map([[0, 100]]));
    assert.deepEqual(await log.append(Buffer.from('next'), Buffer.from('v'), AbortSignal.timeout(15_000)), {
      partition: 0,
      offset: 100,
    });
    assert.equal(onDisk(path).records, 11);
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

/** Frames and records in the log's segment files, read as a fresh open would. */
function onDisk(path: string): { frames: number; records: number } {
  let frames = 0;
  let records = 0;
  for (const segment of listSegments(path)) {
    const bytes = readFileSync(segment.path);
    for (let at = 0; at < bytes.length; ) {
      const checked = checkFrame(bytes, at);
      if (isFrameFault(checked)) throw new Error(`${segment.path} at ${at}: ${checked.why}`);
      frames++;
      records += checked.count;
      at += checked.bytes;
    }
  }
  return { frames, records };
}

function frameStarts(bytes: Buffer): number[] {
  const starts: number[] = [];
  for (let at = 0; at < bytes.length; ) {
    const checked = checkFrame(bytes, at);
    if (isFrameFault(checked)) break;
    starts.push(at);
    at += checked.bytes;
  }
  return starts;
}

function onlySegment(path: string): string {
  const segments = listSegments(path);
  assert.equal(segments.length, 1);
  return (segments[0] as { path: string }).path;
}

/** Appends a whole, intact frame of one record to the log's only segment, as a writer would. */
async function appendWhole(path: string, offset: number, key: string): Promise<void> {
  appendFileSync(onlySegment(path), encodeFrame(offset, [{ key: Buffer.from(key), value: Buffer.from('v') }]));
}

function flipByte(bytes: Buffer, at: number): Buffer {
  const copy = Buffer.from(bytes);
  copy[at] = (copy[at] ?? 0) ^ 0xff;
  return copy;
}

/** Polls until `check` holds, for at most 10 s. */
async function eventually(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('the condition did not hold within 10 s');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
