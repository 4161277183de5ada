import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeServerArgs, parseServerArgs } from '../../bench/lib/server-args.js';

test('bench --args: flags split on whitespace, quotes keep a value with spaces whole', () => {
  assert.deepEqual(parseServerArgs('--log-level debug'), ['--log-level', 'debug']);
  assert.deepEqual(parseServerArgs('  --metrics-listen   127.0.0.1:0 '), ['--metrics-listen', '127.0.0.1:0']);
  assert.deepEqual(parseServerArgs(''), []);
  assert.deepEqual(parseServerArgs(`--a "one two" --b 'x y' --c ""`), ['--a', 'one two', '--b', 'x y', '--c', '']);
  assert.equal(describeServerArgs([]), '(none)');
  assert.equal(describeServerArgs(['--a', 'one two']), '--a "one two"');
});

test('bench --args: an unclosed quote, or a flag the suite sets for every node, is refused', () => {
  assert.throws(() => parseServerArgs('--a "one'), /unclosed "/);
  assert.throws(() => parseServerArgs('--data-dir /tmp/x'), /--data-dir is set by the suite/);
  assert.throws(() => parseServerArgs('--listen=:1'), /--listen is set by the suite/);
});
