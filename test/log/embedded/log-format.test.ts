import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isKvs2Error } from '../../../src/errors.js';
import { EmbeddedLog } from '../../../src/log/embedded/embedded-log.js';
import { LOG_FORMAT_FILE, LOG_FORMAT_VERSION } from '../../../src/log/embedded/log-format.js';
import { listSegments } from '../../../src/log/embedded/segment-scan.js';
import { KVS2_VERSION } from '../../../src/version.js';
import { tempDir } from '../../support/paths.js';

async function readAll(log: EmbeddedLog, count: number): Promise<string[]> {
  const stop = AbortSignal.timeout(10_000);
  const seen: string[] = [];
  for await (const batch of log.read(new Map([[0, 0]]), stop)) {
    for (const record of batch.records) seen.push(`${record.key?.toString()}=${record.value?.toString()}`);
    if (seen.length >= count) break;
  }
  return seen;
}

describe('the embedded log format version', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir('log-format');
  });
  after(async () => {
    await dir.remove();
  });

  test('a new log folder records the format version it is written in', async () => {
    const path = `${dir.path}/new`;
    const log = new EmbeddedLog({ dir: path });
    await log.open();
    await log.close();
    assert.equal(LOG_FORMAT_VERSION, 1);
    assert.equal(readFileSync(join(path, LOG_FORMAT_FILE), 'utf8'), '1\n');
  });

  test('a folder written before versions were recorded opens with its records and is adopted as format 1', async () => {
    const path = `${dir.path}/unversioned`;
    let log = new EmbeddedLog({ dir: path });
    const identity = await log.open();
    await log.append(Buffer.from('a'), Buffer.from('1'), AbortSignal.timeout(10_000));
    await log.append(Buffer.from('b'), Buffer.from('2'), AbortSignal.timeout(10_000));
    await log.close();
    rmSync(join(path, LOG_FORMAT_FILE));

    log = new EmbeddedLog({ dir: path });
    try {
      assert.equal(await log.open(), identity);
      assert.deepEqual(await readAll(log, 2), ['a=1', 'b=2']);
    } finally {
      await log.close();
    }
    assert.equal(readFileSync(join(path, LOG_FORMAT_FILE), 'utf8'), '1\n');
  });

  for (const [what, written, named] of [
    ['a newer format version', '2\n', '2'],
    ['a format version that is not a number', 'two\n', '"two"'],
  ] as const) {
    test(`a folder in ${what} is refused with DATA_FORMAT_UNSUPPORTED before anything in it changes`, async () => {
      const path = `${dir.path}/refused-${named.replaceAll('"', '')}`;
      mkdirSync(path, { recursive: true });
      writeFileSync(join(path, LOG_FORMAT_FILE), written);
      const log = new EmbeddedLog({ dir: path });
      await assert.rejects(log.open(), (error: unknown) => {
        assert.ok(isKvs2Error(error), String(error));
        assert.equal(error.code, 'DATA_FORMAT_UNSUPPORTED');
        assert.equal(
          error.message,
          `embedded log in ${path} is in format version ${named}, which this kvs2 (${KVS2_VERSION}) cannot read: ` +
            'it reads embedded log format version 1. It was written by a newer kvs2: run that version ' +
            '(or a later one) on this data dir.',
        );
        return true;
      });
      await log.close();
      assert.equal(readFileSync(join(path, LOG_FORMAT_FILE), 'utf8'), written);
      assert.equal(existsSync(join(path, 'identity')), false, 'no identity written');
      assert.deepEqual(listSegments(path), [], 'no segment created');
    });
  }
});
