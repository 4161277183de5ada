import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Kvs2Error } from '../../src/errors.js';
import { decodeToken, encodeToken, logTagOf, mergeTokens } from '../../src/service/consistency-token.js';

const tag = logTagOf('topic-id-1');

describe('consistency tokens', () => {
  test('have the documented layout: version, log tag, count, then partition/offset varints by partition', () => {
    const token = encodeToken(
      tag,
      new Map([
        [3, 300],
        [1, 5],
      ]),
    );
    // 300 = 0b1_0010_1100: low seven bits with the continuation bit (0xac), then 0x02.
    assert.deepEqual(token, Buffer.concat([Buffer.from([1]), tag, Buffer.from([2, 1, 5, 3, 0xac, 0x02])]));
  });

  test('round-trip every offset up to 2^53 - 1, whatever the order the map was built in', () => {
    const offsets = new Map([
      [11, Number.MAX_SAFE_INTEGER],
      [0, 0],
      [127, 127],
      [128, 128],
      [5, 2 ** 32 + 1],
      [2, 16_383],
      [3, 16_384],
    ]);
    const decoded = decodeToken(encodeToken(tag, offsets));
    assert.deepEqual(decoded.logTag, tag);
    assert.deepEqual(
      new Map([...decoded.offsets].sort((a, b) => a[0] - b[0])),
      new Map([...offsets].sort((a, b) => a[0] - b[0])),
    );
  });

  test('an empty set of offsets is a valid token', () => {
    assert.equal(decodeToken(encodeToken(tag, new Map())).offsets.size, 0);
  });

  test('a truncated token or one with trailing bytes is refused with INVALID_ARGUMENT', () => {
    const token = encodeToken(tag, new Map([[1, 300]]));
    for (const bad of [token.subarray(0, token.length - 1), Buffer.concat([token, Buffer.from([0])])]) {
      assert.throws(
        () => decodeToken(bad),
        (error: unknown) => error instanceof Kvs2Error && error.code === 'INVALID_ARGUMENT',
      );
    }
  });

  test('merging takes the furthest offset of each partition and refuses tokens of another log', () => {
    const merged = mergeTokens(
      [
        encodeToken(
          tag,
          new Map([
            [1, 10],
            [2, 5],
          ]),
        ),
        encodeToken(
          tag,
          new Map([
            [1, 7],
            [3, 1],
          ]),
        ),
      ],
      tag,
    );
    assert.deepEqual(
      merged,
      new Map([
        [1, 10],
        [2, 5],
        [3, 1],
      ]),
    );
    assert.throws(
      () => mergeTokens([encodeToken(logTagOf('another'), new Map([[1, 1]]))], tag),
      (error: unknown) => error instanceof Kvs2Error && error.code === 'TOKEN_FROM_OTHER_LOG',
    );
  });

  describe('decoding refuses what is not a token, with INVALID_ARGUMENT naming the field', () => {
    const refused = (bytes: Buffer, why: RegExp, what = 'after') =>
      assert.throws(
        () => decodeToken(bytes, what),
        (error: unknown) =>
          error instanceof Kvs2Error &&
          error.code === 'INVALID_ARGUMENT' &&
          error.message.startsWith(`${what} is not a kvs2 consistency token: `) &&
          why.test(error.message),
      );
    const header = Buffer.concat([Buffer.of(1), tag]);

    test('too short to hold a version, a tag and a count', () => {
      refused(Buffer.alloc(0), /0 bytes is too short/);
      refused(header, /9 bytes is too short/);
      refused(Buffer.from('garbage'), /7 bytes is too short/);
    });

    test('an unknown version', () => {
      refused(Buffer.concat([Buffer.of(2), tag, Buffer.of(0)]), /unknown version 2/);
      refused(Buffer.concat([Buffer.of(0), tag, Buffer.of(0)]), /unknown version 0/);
    });

    test('truncated anywhere after the header: in the count, a partition or an offset', () => {
      refused(Buffer.concat([header, Buffer.of(0x80)]), /truncated/);
      refused(Buffer.concat([header, Buffer.of(1)]), /truncated/);
      refused(Buffer.concat([header, Buffer.of(1, 0)]), /truncated/);
      refused(Buffer.concat([header, Buffer.of(1, 0, 0x81)]), /truncated/);
      const token = encodeToken(tag, new Map([[3, Number.MAX_SAFE_INTEGER]]));
      for (let length = 10; length < token.length; length++) refused(token.subarray(0, length), /truncated/);
    });

    test('numbers beyond 2^53 - 1, or varints longer than 8 bytes', () => {
      // 2^53: seven 0x80 bytes then 0x10.
      refused(
        Buffer.concat([header, Buffer.of(1, 0), Buffer.of(0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10)]),
        /out of range/,
      );
      refused(Buffer.concat([header, Buffer.of(1, 0), Buffer.alloc(9, 0x81)]), /out of range/);
    });

    test('a count of partitions no topic has', () => {
      refused(Buffer.concat([header, Buffer.of(0xa1, 0x8d, 0x06)]), /100001 partitions/);
    });

    test('trailing bytes', () => {
      refused(Buffer.concat([encodeToken(tag, new Map([[0, 1]])), Buffer.of(0)]), /trailing bytes/);
    });
  });

  test('a partition named twice in one token counts at its furthest offset', () => {
    const token = Buffer.concat([Buffer.of(1), tag, Buffer.of(2, 0, 9, 0, 4)]);
    assert.deepEqual(decodeToken(token).offsets, new Map([[0, 9]]));
    assert.deepEqual(mergeTokens([token], tag), new Map([[0, 9]]));
  });

  test('merging no tokens waits for nothing; merging one token is its offsets', () => {
    assert.deepEqual(mergeTokens([], tag), new Map());
    const offsets = new Map([
      [0, 4],
      [7, 1],
    ]);
    assert.deepEqual(mergeTokens([encodeToken(tag, offsets)], tag), offsets);
  });

  test('a merged token of another log names its place in `after`, and a lone one is just `after`', () => {
    const foreign = encodeToken(logTagOf('topic-id-2'), new Map([[0, 1]]));
    const mine = encodeToken(tag, new Map([[0, 1]]));
    const refusedAs = (tokens: Buffer[], field: string) =>
      assert.throws(
        () => mergeTokens(tokens, tag),
        (error: unknown) =>
          error instanceof Kvs2Error &&
          error.code === 'TOKEN_FROM_OTHER_LOG' &&
          error.message.startsWith(`${field} names positions in another log`),
      );
    refusedAs([foreign], 'after');
    refusedAs([mine, mine, foreign], 'after[2]');
    // A malformed token is INVALID_ARGUMENT even next to one of another log: each is checked in turn.
    assert.throws(
      () => mergeTokens([mine, Buffer.from('garbage'), foreign], tag),
      (error: unknown) =>
        error instanceof Kvs2Error && error.code === 'INVALID_ARGUMENT' && /^after\[1\]/.test(error.message),
    );
  });

  test('the log tag is the first 8 bytes of the SHA-256 of the identity; identities that differ get other tags', () => {
    assert.equal(tag.length, 8);
    assert.notDeepEqual(logTagOf('topic-id-2'), tag);
    assert.deepEqual(logTagOf('topic-id-1'), tag);
  });
});
