import assert from 'node:assert/strict';
import { test } from 'node:test';
import { servingNodeFlags, servingRuntimeChanges } from '../../src/cli/runtime-settings.js';

const plain = { env: {}, execArgv: [], glibc: true };

test('a serving node on few cores gets a small young generation and a single-threaded collector', () => {
  assert.deepEqual(servingNodeFlags({ ...plain, cores: 1 }), ['--max-semi-space-size=2', '--single-threaded-gc']);
  assert.deepEqual(servingNodeFlags({ ...plain, cores: 2 }), ['--max-semi-space-size=2', '--single-threaded-gc']);
});

test('on more cores V8 keeps its parallel collector', () => {
  assert.deepEqual(servingNodeFlags({ ...plain, cores: 3 }), ['--max-semi-space-size=2']);
  assert.deepEqual(servingNodeFlags({ ...plain, cores: 64 }), ['--max-semi-space-size=2']);
});

test("an operator's flags win, on the command line or in NODE_OPTIONS, however spelled", () => {
  assert.deepEqual(servingNodeFlags({ ...plain, cores: 1, execArgv: ['--max-semi-space-size=16'] }), [
    '--single-threaded-gc',
  ]);
  assert.deepEqual(servingNodeFlags({ ...plain, cores: 1, execArgv: ['--max_semi_space_size=16'] }), [
    '--single-threaded-gc',
  ]);
  assert.deepEqual(servingNodeFlags({ ...plain, cores: 1, execArgv: ['--max-heap-size=512'] }), [
    '--single-threaded-gc',
  ]);
  assert.deepEqual(servingNodeFlags({ ...plain, cores: 1, execArgv: ['--no-single-threaded-gc'] }), [
    '--max-semi-space-size=2',
  ]);
  assert.deepEqual(
    servingNodeFlags({ ...plain, cores: 2, env: { NODE_OPTIONS: '--enable-source-maps  --max-semi-space-size=4' } }),
    ['--single-threaded-gc'],
  );
});

test('a process already started with every setting needs no new start', () => {
  const changes = servingRuntimeChanges({
    env: { MALLOC_MMAP_THRESHOLD_: '8192' },
    execArgv: ['--max-semi-space-size=2', '--single-threaded-gc'],
    cores: 2,
    glibc: true,
  });
  assert.deepEqual(changes, { env: {}, nodeFlags: [] });
});

test('the malloc setting is for glibc only, and an operator value wins', () => {
  assert.deepEqual(servingRuntimeChanges({ ...plain, cores: 4 }).env, { MALLOC_MMAP_THRESHOLD_: '8192' });
  assert.deepEqual(servingRuntimeChanges({ ...plain, cores: 4, glibc: false }).env, {});
  assert.deepEqual(servingRuntimeChanges({ ...plain, cores: 4, env: { MALLOC_MMAP_THRESHOLD_: '0' } }).env, {});
});
