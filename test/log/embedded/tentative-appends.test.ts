import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EmbeddedLog } from '../../../src/log/embedded/embedded-log.js';
import type { LogRecord } from '../../../src/log/log.js';
import { tempDir } from '../../support/paths.js';

const b = (text: string): Buffer => Buffer.from(text);
const deadline = (): AbortSignal => AbortSignal.timeout(15_000);

/** Every record the log holds from offset 0, read until `count` arrived. */
async function readAll(log: EmbeddedLog, count: number): Promise<Array<[number, string, string | null]>> {
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), 10_000);
  const records: LogRecord[] = [];
  for await (const batch of log.read(new Map(), stop.signal)) {
    records.push(...batch.records);
    if (records.length >= count) break;
  }
  clearTimeout(timer);
  return records.map((r) => [r.offset, r.key?.toString() ?? '', r.value === null ? null : r.value.toString()]);
}

describe('EmbeddedLog tentative appends (conditional writes)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir('tentative');
  });
  after(async () => {
    await dir.remove();
  });

  test('the log end is held until the verdict: appends made meanwhile land after, a commit is read in order', async () => {
    const log = new EmbeddedLog({ dir: `${dir.path}/commit` });
    await log.open();
    await log.append(b('before'), b('0'), deadline());
    const tentative = await log.appendTentative(
      [
        { key: b('cas-a'), value: b('1') },
        { key: b('cas-b'), value: null },
      ],
      deadline(),
    );
    assert.deepEqual([tentative.partition, tentative.offset], [0, 1]);
    const later = log.append(b('after'), b('2'), deadline());
    // Held: the end stays where the tentative records begin, and the later append waits.
    assert.deepEqual(await log.endOffsets(deadline()), new Map([[0, 1]]));
    let laterLanded = false;
    void later.then(() => {
      laterLanded = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(laterLanded, false);
    await tentative.commit();
    assert.deepEqual(await later, { partition: 0, offset: 3 });
    assert.deepEqual(await readAll(log, 4), [
      [0, 'before', '0'],
      [1, 'cas-a', '1'],
      [2, 'cas-b', null],
      [3, 'after', '2'],
    ]);
    await log.close();
  });

  test('an abort writes nothing and the next append takes the offset; a restart finds only what was committed', async () => {
    const path = `${dir.path}/abort`;
    const log = new EmbeddedLog({ dir: path });
    await log.open();
    const aborted = await log.appendTentative([{ key: b('never'), value: b('x') }], deadline());
    await aborted.abort();
    await aborted.abort();
    await assert.rejects(aborted.commit(), /discarded/);
    assert.deepEqual(await log.append(b('next'), b('y'), deadline()), { partition: 0, offset: 0 });
    await log.close();
    const reopened = new EmbeddedLog({ dir: path });
    await reopened.open();
    assert.deepEqual(await readAll(reopened, 1), [[0, 'next', 'y']]);
    assert.deepEqual(await reopened.endOffsets(deadline()), new Map([[0, 1]]));
    await reopened.close();
  });

  test('no verdict within the timeout: discarded, the log moves on, and a late commit is refused', async () => {
    const log = new EmbeddedLog({ dir: `${dir.path}/timeout`, tentativeTimeoutMs: 100 });
    await log.open();
    const forgotten = await log.appendTentative([{ key: b('slow'), value: b('x') }], deadline());
    assert.deepEqual(await log.append(b('moves-on'), b('y'), deadline()), { partition: 0, offset: 0 });
    await assert.rejects(forgotten.commit(), (error: Error) => /not decided within 100 ms/.test(error.message));
    assert.deepEqual(await readAll(log, 1), [[0, 'moves-on', 'y']]);
    await log.close();
  });

  test('tentative appends queue behind each other in arrival order', async () => {
    const log = new EmbeddedLog({ dir: `${dir.path}/queue` });
    await log.open();
    const first = log.appendTentative([{ key: b('t1'), value: b('1') }], deadline());
    const second = log.appendTentative([{ key: b('t2'), value: b('2') }], deadline());
    let secondHanded = false;
    void second.then(() => {
      secondHanded = true;
    });
    const one = await first;
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(secondHanded, false, 'the second waits until the first is decided');
    await one.commit();
    const two = await second;
    assert.equal(two.offset, 1);
    await two.abort();
    assert.deepEqual(await log.append(b('t3'), b('3'), deadline()), { partition: 0, offset: 1 });
    assert.deepEqual(await readAll(log, 2), [
      [0, 't1', '1'],
      [1, 't3', '3'],
    ]);
    await log.close();
  });

  test('a tentative append whose signal aborts while it queues is never handed out', async () => {
    const log = new EmbeddedLog({ dir: `${dir.path}/signal` });
    await log.open();
    const holder = await log.appendTentative([{ key: b('holder'), value: b('h') }], deadline());
    const stop = new AbortController();
    const queued = log.appendTentative([{ key: b('gave-up'), value: b('g') }], stop.signal);
    stop.abort();
    await assert.rejects(queued);
    await holder.commit();
    assert.deepEqual(await log.append(b('last'), b('l'), deadline()), { partition: 0, offset: 1 });
    assert.deepEqual(await readAll(log, 2), [
      [0, 'holder', 'h'],
      [1, 'last', 'l'],
    ]);
    await log.close();
  });
});
