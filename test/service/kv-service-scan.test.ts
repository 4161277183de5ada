import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { STORE_MAX_KEY_BYTES } from '../../src/config/limits.js';
import { isKvs2Error } from '../../src/errors.js';
import type { ScanRequest, ScanResult } from '../../src/service/requests.js';
import { assertFails, b, EMPTY, noDeadline, now, scanRequest } from '../support/service-calls.js';
import { type ServiceNode, type SteppedReplica, startSteppedNode } from '../support/service-node.js';

const MAX_BATCH_KEYS = 100;
const MAX_REPLY_BYTES = 4096;

const keysOf = (result: ScanResult): string[] => result.items.map((item) => item.key.toString());

describe('KvService.scan', () => {
  let node: ServiceNode<SteppedReplica>;

  /** Every page of a scan, following the continuation until the range is done. */
  function pages(fields: Partial<ScanRequest>): ScanResult[] {
    const all: ScanResult[] = [];
    let continuation: Buffer = EMPTY;
    do {
      const page = now(node.service.scan(scanRequest({ ...fields, continuation }), noDeadline()));
      all.push(page);
      continuation = page.continuation ?? EMPTY;
    } while (continuation.length > 0 && all.length < 1000);
    return all;
  }

  before(async () => {
    node = await startSteppedNode({ limits: { maxBatchKeys: MAX_BATCH_KEYS, maxReplyBytes: MAX_REPLY_BYTES } });
    for (let i = 0; i < 250; i++) await node.log.append(b(`scan/${String(i).padStart(3, '0')}`), b(`value-${i}`));
    await node.log.append(b('scan0'), b('outside the prefix'));
    for (let i = 0; i < 5; i++) await node.log.append(b(`big/${i}`), Buffer.alloc(1500, i));
    await node.log.append(b('huge/0'), Buffer.alloc(MAX_REPLY_BYTES + 1000, 1));
    await node.log.append(b('huge/1'), b('small'));
    await node.log.append(b('ff'), b('x'));
    await node.log.append(Buffer.from([0xff, 0xff]), b('y'));
    await node.log.append(Buffer.from([0xff, 0xff, 0x00]), b('z'));
    await node.replica.applyAll();
  });
  after(async () => {
    await node.close();
  });

  test('by prefix, page by page with continuation, keys in byte order, each once', () => {
    const all = pages({ prefix: b('scan/'), limit: 100 });
    assert.equal(all.length, 3);
    assert.deepEqual(
      all.map((page) => page.items.length),
      [100, 100, 50],
    );
    assert.equal(all.at(-1)?.continuation, null);
    const items = all.flatMap((page) => page.items);
    assert.deepEqual(
      items.map((item) => item.key.toString()),
      Array.from({ length: 250 }, (_, i) => `scan/${String(i).padStart(3, '0')}`),
    );
    items.forEach((item, i) => {
      assert.deepEqual(item.value, b(`value-${i}`));
    });
    // The continuation is the last key of the page.
    assert.deepEqual(all[0]?.continuation, all[0]?.items.at(-1)?.key);
  });

  test('a limit of 0 asks for the default page, at most --max-batch-keys', () => {
    const page = now(node.service.scan(scanRequest({ prefix: b('scan/') }), noDeadline()));
    assert.equal(page.items.length, MAX_BATCH_KEYS);
    assert.ok(page.continuation);
  });

  test('by [start, end) range, keys only', () => {
    const page = now(
      node.service.scan(scanRequest({ start: b('scan/010'), end: b('scan/015'), keysOnly: true }), noDeadline()),
    );
    assert.deepEqual(
      page.items.map((item) => [item.key.toString(), item.value]),
      ['010', '011', '012', '013', '014'].map((n) => [`scan/${n}`, undefined]),
    );
    assert.equal(page.continuation, null);
  });

  test('an empty start scans from the first key; an empty end has no upper bound; start = end is empty', () => {
    const first = now(node.service.scan(scanRequest({ limit: 1 }), noDeadline()));
    assert.deepEqual(keysOf(first), ['big/0']);
    const last = now(node.service.scan(scanRequest({ start: Buffer.from([0xff]) }), noDeadline()));
    assert.deepEqual(
      last.items.map((item) => item.key),
      [Buffer.from([0xff, 0xff]), Buffer.from([0xff, 0xff, 0x00])],
    );
    assert.deepEqual(
      now(node.service.scan(scanRequest({ start: b('scan/'), end: b('scan/') }), noDeadline())).items,
      [],
    );
  });

  test('a prefix of only 0xff bytes runs to the end of the key space', () => {
    assert.deepEqual(
      now(node.service.scan(scanRequest({ prefix: Buffer.from([0xff, 0xff]) }), noDeadline())).items.map((i) => i.key),
      [Buffer.from([0xff, 0xff]), Buffer.from([0xff, 0xff, 0x00])],
    );
  });

  test('pages hold at most --max-reply-bytes of keys and values; an item larger than that is REPLY_TOO_LARGE', () => {
    const big = pages({ prefix: b('big/') });
    // Each item is 5 + 1500 bytes: two fit in 4096.
    assert.deepEqual(big.map(keysOf), [['big/0', 'big/1'], ['big/2', 'big/3'], ['big/4']]);
    // As another producer may write it: no reply can hold it.
    assert.throws(
      () => pages({ prefix: b('huge/') }),
      (error: unknown) =>
        isKvs2Error(error) && error.code === 'REPLY_TOO_LARGE' && /--max-reply-bytes/.test(error.message),
    );
  });

  test('a continuation whose key was deleted meanwhile still continues right after it', async () => {
    const first = now(node.service.scan(scanRequest({ prefix: b('scan/'), limit: 10 }), noDeadline()));
    assert.deepEqual(first.continuation, b('scan/009'));
    await node.log.append(b('scan/009'), null);
    await node.replica.applyAll();
    const next = now(
      node.service.scan(scanRequest({ prefix: b('scan/'), limit: 2, continuation: b('scan/009') }), noDeadline()),
    );
    assert.deepEqual(keysOf(next), ['scan/010', 'scan/011']);
  });

  test(`a continuation of ${STORE_MAX_KEY_BYTES} bytes (LMDB's key limit) continues without building a longer key`, async () => {
    // Keys longer than --max-key-bytes, as another producer may write them, up to what the store takes.
    const stem = Buffer.concat([b('long/'), Buffer.alloc(STORE_MAX_KEY_BYTES - 6, 'x')]);
    const keys = [0x00, 0x01, 0xff].map((last) => Buffer.concat([stem, Buffer.of(last)]));
    for (const key of keys) await node.log.append(key, b('long'));
    await node.replica.applyAll();
    assert.ok(keys.every((key) => key.length === STORE_MAX_KEY_BYTES && key.length > node.limits.maxKeyBytes));
    const all = pages({ prefix: b('long/'), limit: 1, keysOnly: true });
    assert.deepEqual(
      all.flatMap((page) => page.items.map((item) => item.key)),
      keys,
    );
    assert.deepEqual(all[0]?.continuation, keys[0]);
    // The same with [start, end) and values.
    const ranged = pages({ start: b('long/'), end: b('long0'), limit: 1 });
    assert.deepEqual(
      ranged.flatMap((page) => page.items.map((item) => item.key)),
      keys,
    );
  });

  describe('bad requests are INVALID_ARGUMENT, naming the field', () => {
    const scan = (fields: Partial<ScanRequest>) => () => node.service.scan(scanRequest(fields), noDeadline());
    const tooLong = (): Buffer => Buffer.alloc(node.limits.maxKeyBytes + 1, 'k');

    test('prefix together with start or end', async () => {
      await assertFails(scan({ prefix: b('a'), start: b('b') }), 'INVALID_ARGUMENT', /either prefix or start\/end/);
      await assertFails(scan({ prefix: b('a'), end: b('b') }), 'INVALID_ARGUMENT', /either prefix or start\/end/);
    });

    test('start after end', async () => {
      await assertFails(scan({ start: b('z'), end: b('a') }), 'INVALID_ARGUMENT', /start is after end/);
    });

    test('a limit over --max-batch-keys', async () => {
      await assertFails(
        scan({ limit: MAX_BATCH_KEYS + 1 }),
        'INVALID_ARGUMENT',
        new RegExp(`^limit is ${MAX_BATCH_KEYS + 1}; at most ${MAX_BATCH_KEYS}`),
      );
      assert.equal(
        now(node.service.scan(scanRequest({ prefix: b('scan/'), limit: MAX_BATCH_KEYS }), noDeadline())).items.length,
        MAX_BATCH_KEYS,
      );
    });

    test('prefix, start and end over --max-key-bytes', async () => {
      await assertFails(scan({ prefix: tooLong() }), 'INVALID_ARGUMENT', /^prefix is \d+ bytes/);
      await assertFails(scan({ start: tooLong() }), 'INVALID_ARGUMENT', /^start is \d+ bytes/);
      await assertFails(scan({ end: tooLong() }), 'INVALID_ARGUMENT', /^end is \d+ bytes/);
    });

    test(`a continuation longer than ${STORE_MAX_KEY_BYTES} bytes, or outside the range`, async () => {
      await assertFails(
        scan({ continuation: Buffer.alloc(STORE_MAX_KEY_BYTES + 1, 'x') }),
        'INVALID_ARGUMENT',
        new RegExp(
          `^continuation is ${STORE_MAX_KEY_BYTES + 1} bytes; no stored key is longer than ${STORE_MAX_KEY_BYTES}`,
        ),
      );
      await assertFails(
        scan({ prefix: b('scan/'), continuation: b('other') }),
        'INVALID_ARGUMENT',
        /continuation does not belong/,
      );
      await assertFails(
        scan({ start: b('b'), end: b('c'), continuation: b('c') }),
        'INVALID_ARGUMENT',
        /continuation does not belong/,
      );
      await assertFails(
        scan({ start: b('b'), end: b('c'), continuation: b('a') }),
        'INVALID_ARGUMENT',
        /continuation does not belong/,
      );
    });
  });
});
