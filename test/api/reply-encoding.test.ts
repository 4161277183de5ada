import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { encodeGetReply, encodeMultiGetReply } from '../../src/api/reply-encoding.js';
import { GetReply, MultiGetReply, ReadStatus } from '../../src/gen/kvs2.js';

const b = (text: string): Buffer => Buffer.from(text);
const EMPTY = Buffer.alloc(0);

/** What the generated encoder writes for the same reply: the reference the direct encoder must equal. */
function generated(keys: Buffer[], values: Array<Buffer | undefined>, versions: number[], token: Buffer): Buffer {
  return Buffer.from(
    MultiGetReply.encode({
      parts: keys.map((key, i) => {
        const value = values[i];
        return value === undefined
          ? { key, status: ReadStatus.NOT_FOUND, data: EMPTY, version: 0 }
          : { key, status: ReadStatus.OK, data: value, version: versions[i] ?? 0 };
      }),
      token,
    }).finish(),
  );
}

describe('MultiGetReply written directly', () => {
  test('the same bytes as the generated encoder: found, not found, empty values, versions of every size', () => {
    const versions = [1, 127, 128, 16_383, 16_384, 2 ** 31 - 1, 2 ** 31, 2 ** 32 + 5, 2 ** 53 - 1, 0];
    const keys = versions.map((_, i) => b(`key-${i}`));
    const values = versions.map((v, i) => (i === 3 ? undefined : i === 4 ? EMPTY : Buffer.alloc(i * 30, v % 256)));
    const token = Buffer.alloc(37, 7);
    const direct = encodeMultiGetReply(keys, { values, versions, token }).bytes;
    assert.deepEqual(direct, generated(keys, values, versions, token));
    const decoded = MultiGetReply.decode(direct);
    assert.deepEqual(
      decoded.parts.map((p) => [p.key.toString(), p.status, p.data.length, p.version]),
      keys.map((k, i) => [
        k.toString(),
        values[i] === undefined ? ReadStatus.NOT_FOUND : ReadStatus.OK,
        values[i]?.length ?? 0,
        values[i] === undefined ? 0 : versions[i],
      ]),
    );
    assert.deepEqual(decoded.token, token);
  });

  test('long keys and values (multi-byte lengths), no keys, and an empty token', () => {
    const keys = [Buffer.alloc(300, 1), Buffer.alloc(20_000, 2)];
    const values = [Buffer.alloc(70_000, 3), undefined];
    assert.deepEqual(
      encodeMultiGetReply(keys, { values, versions: [99, 0], token: EMPTY }).bytes,
      generated(keys, values, [99, 0], EMPTY),
    );
    assert.deepEqual(encodeMultiGetReply([], { values: [], versions: [], token: EMPTY }).bytes, Buffer.alloc(0));
    assert.deepEqual(
      encodeMultiGetReply([], { values: [], versions: [], token: b('t') }).bytes,
      generated([], [], [], b('t')),
    );
  });
});

describe('GetReply written directly', () => {
  const generatedGet = (value: Buffer | undefined, version: number, token: Buffer): Buffer =>
    Buffer.from(
      GetReply.encode(
        value === undefined
          ? { status: ReadStatus.NOT_FOUND, data: EMPTY, token, version: 0 }
          : { status: ReadStatus.OK, data: value, token, version },
      ).finish(),
    );

  test('the same bytes as the generated encoder: found, not found, empty values and tokens, versions of every size', () => {
    const versions = [0, 1, 127, 128, 16_383, 16_384, 2 ** 31, 2 ** 32 + 5, 2 ** 53 - 1];
    const values = [undefined, EMPTY, b('v'), Buffer.alloc(200, 9), Buffer.alloc(70_000, 3)];
    for (const token of [EMPTY, b('t'), Buffer.alloc(300, 7)]) {
      for (const value of values) {
        for (const version of versions) {
          const direct = encodeGetReply({ value, version, token }).bytes;
          assert.deepEqual(direct, generatedGet(value, version, token), `${value?.length} ${version} ${token.length}`);
          const decoded = GetReply.decode(direct);
          assert.equal(decoded.status, value === undefined ? ReadStatus.NOT_FOUND : ReadStatus.OK);
          assert.deepEqual(Buffer.from(decoded.data), value ?? EMPTY);
          assert.equal(decoded.version, value === undefined ? 0 : version);
          assert.deepEqual(Buffer.from(decoded.token), token);
        }
      }
    }
  });
});
