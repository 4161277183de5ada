import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { prefixEnd } from '../../src/key-prefix.js';
import type { ScanRequest } from '../../src/service/requests.js';
import { scanBounds } from '../../src/service/scan-range.js';
import { assertFails, b, scanRequest } from '../support/service-calls.js';

const request = scanRequest;

describe('prefixEnd', () => {
  test('is the prefix with its last byte below 0xff raised by one, and the 0xff bytes after it dropped', () => {
    assert.deepEqual(prefixEnd(b('abc')), b('abd'));
    assert.deepEqual(prefixEnd(Buffer.from([0x61, 0xff, 0xff])), b('b'));
    assert.deepEqual(prefixEnd(Buffer.from([0x00])), Buffer.from([0x01]));
    assert.deepEqual(prefixEnd(Buffer.from([0x01, 0xfe, 0xff])), Buffer.from([0x01, 0xff]));
  });

  test('is undefined when every byte is 0xff: nothing comes after all those keys', () => {
    assert.equal(prefixEnd(Buffer.from([0xff])), undefined);
    assert.equal(prefixEnd(Buffer.from([0xff, 0xff, 0xff])), undefined);
  });

  test('leaves the prefix it was given unchanged', () => {
    const prefix = b('abc');
    prefixEnd(prefix);
    assert.deepEqual(prefix, b('abc'));
  });
});

describe('scanBounds', () => {
  test('a prefix covers [prefix, prefixEnd(prefix))', () => {
    assert.deepEqual(scanBounds(request({ prefix: b('user/') })), {
      start: b('user/'),
      startExclusive: false,
      end: b('user0'),
    });
    assert.deepEqual(scanBounds(request({ prefix: Buffer.from([0xff, 0xff]) })), {
      start: Buffer.from([0xff, 0xff]),
      startExclusive: false,
      end: undefined,
    });
  });

  test('start and end are taken as given; an empty end has no bound, an empty start begins at the first key', () => {
    assert.deepEqual(scanBounds(request({ start: b('a'), end: b('m') })), {
      start: b('a'),
      startExclusive: false,
      end: b('m'),
    });
    // LMDB has no empty key: the smallest one is a single zero byte.
    assert.deepEqual(scanBounds(request({})), { start: Buffer.of(0), startExclusive: false, end: undefined });
    assert.deepEqual(scanBounds(request({ end: b('m') })), { start: Buffer.of(0), startExclusive: false, end: b('m') });
    // An empty range is fine.
    assert.deepEqual(scanBounds(request({ start: b('m'), end: b('m') })).end, b('m'));
  });

  test('a continuation starts right after itself, as the same key, never a longer one', () => {
    const continuation = Buffer.alloc(1978, 'k');
    const bounds = scanBounds(request({ continuation, start: b('k'), end: b('l') }));
    assert.deepEqual(bounds, { start: continuation, startExclusive: true, end: b('l') });
    assert.equal(bounds.start.length, 1978);
    assert.deepEqual(scanBounds(request({ prefix: b('user/'), continuation: b('user/9') })), {
      start: b('user/9'),
      startExclusive: true,
      end: b('user0'),
    });
    // The first key of the range may be the last of a page; with no end, anything at or after start is in.
    assert.equal(scanBounds(request({ start: b('k'), continuation: b('k') })).startExclusive, true);
    assert.equal(scanBounds(request({ start: b('k'), continuation: Buffer.alloc(10, 0xff) })).startExclusive, true);
    assert.equal(scanBounds(request({ continuation: Buffer.of(0) })).startExclusive, true);
  });

  test('contradicting fields are INVALID_ARGUMENT', async () => {
    const bounds = (fields: Partial<ScanRequest>) => () => scanBounds(request(fields));
    await assertFails(bounds({ prefix: b('a'), start: b('a') }), 'INVALID_ARGUMENT', /either prefix or start\/end/);
    await assertFails(bounds({ prefix: b('a'), end: b('b') }), 'INVALID_ARGUMENT', /either prefix or start\/end/);
    await assertFails(bounds({ start: b('b'), end: b('a') }), 'INVALID_ARGUMENT', /start is after end/);
  });

  test('a continuation outside the range is INVALID_ARGUMENT: before start, at or after end, outside the prefix', async () => {
    const bounds = (fields: Partial<ScanRequest>) => () => scanBounds(request(fields));
    const outside = /continuation does not belong to this range/;
    await assertFails(bounds({ start: b('b'), end: b('d'), continuation: b('a') }), 'INVALID_ARGUMENT', outside);
    await assertFails(bounds({ start: b('b'), end: b('d'), continuation: b('d') }), 'INVALID_ARGUMENT', outside);
    await assertFails(bounds({ start: b('b'), end: b('d'), continuation: b('e') }), 'INVALID_ARGUMENT', outside);
    await assertFails(bounds({ prefix: b('user/'), continuation: b('user0') }), 'INVALID_ARGUMENT', outside);
    await assertFails(bounds({ prefix: b('user/'), continuation: b('user') }), 'INVALID_ARGUMENT', outside);
  });
});
