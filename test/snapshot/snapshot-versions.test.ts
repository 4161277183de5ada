import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { bootstrapFromPeers, logFactsOf } from '../../src/replica/peer-bootstrap.js';
import { holdsData } from '../../src/snapshot/data-dir.js';
import { compactDataDir } from '../../src/snapshot/data-dir-snapshot.js';
import { SnapshotEncoder } from '../../src/snapshot/snapshot-encoder.js';
import {
  encodeHeader,
  encodeMetadataFrame,
  encodeTrailerFrame,
  FRAME_ENTRIES,
  FRAME_HEADER_BYTES,
  metadataOf,
  sealFrame,
  writeVarint,
} from '../../src/snapshot/snapshot-format.js';
import { installSnapshot } from '../../src/snapshot/snapshot-install.js';
import { LmdbStore } from '../../src/store/lmdb-store.js';
import { writeFormatOneStore } from '../support/format-one-store.js';
import { MemoryLog } from '../support/memory-log.js';
import { tempDir } from '../support/paths.js';
import { collect, fillStore } from './snapshot-support.js';

const EMBEDDED = 'embedded:5f0c4c1e-8d4b-4f4e-9a43-1c2d3e4f5a6b';

/** Every key of the store in `dir` with its value and version, in key order. */
async function versionsIn(dir: string): Promise<Array<[string, string, number]>> {
  const store = LmdbStore.open(dir);
  try {
    using snapshot = store.snapshot();
    return [...snapshot.entries()].map((entry) => [
      Buffer.from(entry.key).toString(),
      Buffer.from(entry.value).toString(),
      entry.version,
    ]);
  } finally {
    await store.close();
  }
}

/**
 * A snapshot as a kvs2 before versions wrote it (format 1): entries without versions. Built from the format's
 * pieces by hand, so that it does not depend on the current encoder.
 */
function formatOneSnapshot(
  entries: ReadonlyArray<readonly [string, string]>,
  logIdentity: string,
  appliedOffsets: Map<number, number>,
): Buffer {
  const header = encodeHeader(1);
  const metadata = encodeMetadataFrame({
    ...metadataOf({
      storeFormat: 1,
      logIdentity,
      appliedOffsets,
      caughtUpAt: Date.now(),
      keys: entries.length,
      createdAt: Date.now(),
    }),
    snapshotFormat: 1,
  });
  const body = Buffer.alloc(64 * 1024);
  let at = FRAME_HEADER_BYTES;
  body[at++] = FRAME_ENTRIES;
  for (const [key, value] of entries) {
    at = writeVarint(body, at, key.length);
    at += body.write(key, at);
    at = writeVarint(body, at, value.length);
    at += body.write(value, at);
  }
  const frame = sealFrame(body.subarray(0, at));
  const hash = createHash('sha256').update(header).update(metadata).update(frame).digest();
  return Buffer.concat([header, metadata, frame, encodeTrailerFrame(entries.length, hash)]);
}

async function* once(bytes: Buffer): AsyncGenerator<Buffer> {
  yield bytes;
}

describe('versions in snapshots (format 2)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir('snapshot-versions');
  });
  after(async () => {
    await dir.remove();
  });

  test('a snapshot carries every key’s version: the restored store has exactly the source’s', async () => {
    const source = join(dir.path, 'source');
    const entries = Array.from({ length: 3000 }, (_, i): [Buffer, Buffer] => [
      Buffer.from(`key/${String(i).padStart(5, '0')}`),
      Buffer.from(`value ${i}`),
    ]);
    // fillStore gives the i-th entry version i + 1; a large version too.
    await fillStore(source, entries, new Map([[0, 2 ** 45]]), EMBEDDED);
    const store = LmdbStore.open(source);
    await store.apply(
      [{ key: Buffer.from('key/big'), value: Buffer.from('big'), version: 2 ** 45 }],
      new Map(),
      EMBEDDED,
    );
    const encoder = new SnapshotEncoder(store.snapshot(), { frameBytes: 4096 });
    assert.equal(encoder.metadata.snapshotFormat, 2);
    assert.equal(encoder.metadata.storeFormat, 2);
    const bytes = await collect(encoder);
    await store.close();

    const dataDir = join(dir.path, 'restored');
    await installSnapshot(once(bytes), { dataDir });
    const restored = await versionsIn(join(dataDir, 'store'));
    assert.deepEqual(restored, await versionsIn(source));
    assert.deepEqual(restored.at(-1), ['key/big', 'big', 2 ** 45]);
    assert.deepEqual(restored[0], ['key/00000', 'value 0', 1]);
  });

  test('a format-1 snapshot of the embedded log restores with the applied offset as every key’s version', async () => {
    const bytes = formatOneSnapshot(
      [
        ['a', 'one'],
        ['b', 'two'],
      ],
      EMBEDDED,
      new Map([[0, 17]]),
    );
    const dataDir = join(dir.path, 'format-one-embedded');
    const installed = await installSnapshot(once(bytes), { dataDir });
    assert.equal(installed.metadata.snapshotFormat, 1);
    assert.deepEqual(await versionsIn(join(dataDir, 'store')), [
      ['a', 'one', 17],
      ['b', 'two', 17],
    ]);
  });

  test('kvs2 compact of a stopped embedded node with a format-1 store upgrades it; a Kafka node’s is refused', async () => {
    const embedded = join(dir.path, 'compact-embedded');
    await writeFormatOneStore(
      join(embedded, 'store'),
      [
        ['a', 'one'],
        ['b', 'two'],
      ],
      { appliedOffsets: [[0, 12]], logIdentity: EMBEDDED, format: 1 },
    );
    const compacted = await compactDataDir(embedded);
    assert.equal(compacted.keys, 2);
    assert.deepEqual(await versionsIn(join(embedded, 'store')), [
      ['a', 'one', 12],
      ['b', 'two', 12],
    ]);

    const kafka = join(dir.path, 'compact-kafka');
    await writeFormatOneStore(join(kafka, 'store'), [['a', 'one']], {
      appliedOffsets: [[0, 3]],
      logIdentity: 'kafka:topic-id',
      format: 1,
    });
    await assert.rejects(compactDataDir(kafka), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'DATA_FORMAT_UNSUPPORTED');
      assert.match(error.message, /start this kvs2's node on it first/);
      return true;
    });
  });

  test('a format-1 snapshot of a Kafka node is refused: by a restore, and by a peer bootstrap (store left empty)', async () => {
    const offsets = new Map([
      [0, 4],
      [1, 9],
    ]);
    const bytes = formatOneSnapshot([['a', 'one']], 'kafka:topic-id', offsets);
    const dataDir = join(dir.path, 'format-one-kafka');
    await assert.rejects(installSnapshot(once(bytes), { dataDir }), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'DATA_FORMAT_UNSUPPORTED');
      assert.match(error.message, /format version 1, written by a kvs2 before versions/);
      return true;
    });

    const log = new MemoryLog({ partitions: 2 });
    const identity = await log.open();
    const bootstrapping = join(dir.path, 'bootstrapping');
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(line) });
    try {
      const peerBytes = formatOneSnapshot([['a', 'one']], identity, offsets);
      const result = await bootstrapFromPeers({
        peers: ['old-peer:1'],
        stream: () => once(peerBytes),
        dataDir: bootstrapping,
        logFacts: logFactsOf(log, new AbortController().signal),
        logger,
        signal: new AbortController().signal,
      });
      assert.equal(result, null);
      assert.equal(holdsData(bootstrapping).store, false, 'no store was installed');
      assert.ok(
        lines.some((line) => /cannot be used: it is in snapshot format 1, without versions/.test(line)),
        lines.join(''),
      );
    } finally {
      await log.close();
    }
  });
});
