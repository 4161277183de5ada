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
});
