import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InvalidArgumentError } from 'commander';
import { formatToken, parseBytes, parseToken, textBytes } from '../../../src/cli/commands/bytes-encoding.js';
import { parseDuration } from '../../../src/cli/commands/duration.js';
import { UsageError } from '../../../src/cli/commands/usage-error.js';

describe('client command arguments', () => {
  test('keys and values decode as UTF-8, hex or base64, and what does not decode is a usage error', () => {
    assert.deepEqual(parseBytes('héllo', 'utf8', 'key'), Buffer.from('héllo'));
    assert.deepEqual(parseBytes('00ff10', 'hex', 'key'), Buffer.from([0, 255, 16]));
    assert.deepEqual(parseBytes('AP8Q', 'base64', 'key'), Buffer.from([0, 255, 16]));
    assert.deepEqual(parseBytes('', 'hex', 'key'), Buffer.alloc(0));
    // Buffer.from would have dropped these silently.
    for (const [text, encoding] of [
      ['0g', 'hex'],
      ['abc', 'hex'],
      ['AP8', 'base64'],
      ['A*==', 'base64'],
    ] as const) {
      assert.throws(() => parseBytes(text, encoding, 'key'), UsageError, `${encoding} ${text}`);
    }
  });

  test('text output is raw bytes for UTF-8, the encoded string otherwise', () => {
    const bytes = Buffer.from([0xc3, 0xa9, 0x00]);
    assert.deepEqual(textBytes(bytes, 'utf8'), bytes);
    assert.equal(textBytes(bytes, 'hex').toString(), 'c3a900');
    assert.equal(textBytes(bytes, 'base64').toString(), 'w6kA');
  });

  test('tokens round-trip through base64 and an empty or broken one is refused', () => {
    const token = Buffer.from([1, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 200]);
    assert.deepEqual(parseToken(formatToken(token)), token);
    assert.throws(() => parseToken(''), UsageError);
    assert.throws(() => parseToken('not a token'), UsageError);
  });

  test('--timeout takes ms, s, m or bare seconds', () => {
    assert.deepEqual(['500ms', '5s', '1.5s', '2m', '3'].map(parseDuration), [500, 5000, 1500, 120_000, 3000]);
    for (const bad of ['', '0', '5h', '-1s', 'soon', '0.1ms']) {
      assert.throws(() => parseDuration(bad), InvalidArgumentError, bad);
    }
  });
});
