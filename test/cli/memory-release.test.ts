import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { getHeapStatistics } from 'node:v8';
import { type HeapFigures, MemoryRelease } from '../../src/cli/memory-release.js';

const MIB = 1024 * 1024;

class Logged {
  readonly reasons: string[] = [];
  readonly info = (fields: Record<string, unknown>, _message: string): void => {
    if (typeof fields.reason === 'string') this.reasons.push(fields.reason);
  };
}

/** The policy alone: a heap and a load the test sets, and a collector that shrinks the heap. */
function scripted() {
  const state = { physical: 100 * MIB, used: 50 * MIB, busy: 0, collections: 0 };
  const logged = new Logged();
  const release = new MemoryRelease({
    logger: logged,
    checkEveryMs: 3_600_000,
    growthBytes: 64 * MIB,
    idleBelow: 0.05,
    collect: () => {
      state.collections++;
      state.physical = state.used + 5 * MIB;
    },
    heapFigures: (): HeapFigures => ({ physicalBytes: state.physical, usedBytes: state.used }),
    busyShare: () => state.busy,
  });
  return { state, logged, release };
}

describe('MemoryRelease', () => {
  test('releases when the loop was idle and the heap grew since the last release', () => {
    const { state, logged, release } = scripted();
    try {
      state.physical += 200 * MIB;
      assert.equal(release.check(), true);
      assert.equal(state.collections, 1);
      assert.deepEqual(logged.reasons, ['idle after heap growth']);
      // The heap it left behind is the new baseline: nothing grew since, nothing to do.
      assert.equal(release.check(), false);
      assert.equal(state.collections, 1);
    } finally {
      release.close();
    }
  });

  test('leaves a busy process alone, however much the heap grew', () => {
    const { state, release } = scripted();
    try {
      state.physical += 500 * MIB;
      state.busy = 0.3;
      assert.equal(release.check(), false);
      assert.equal(state.collections, 0);
      state.busy = 0.01;
      assert.equal(release.check(), true);
      assert.equal(state.collections, 1);
    } finally {
      release.close();
    }
  });

  test('does not collect for growth below the threshold', () => {
    const { state, release } = scripted();
    try {
      state.physical += 63 * MIB;
      assert.equal(release.check(), false);
      assert.equal(release.releaseIfGrown('replica caught up'), false);
      assert.equal(state.collections, 0);
    } finally {
      release.close();
    }
  });

  test('releaseIfGrown does not wait for the loop to be idle', () => {
    const { state, logged, release } = scripted();
    try {
      state.physical += 100 * MIB;
      state.busy = 1;
      assert.equal(release.releaseIfGrown('replica caught up'), true);
      assert.deepEqual(logged.reasons, ['replica caught up']);
    } finally {
      release.close();
    }
  });

  test("gives a dead burst's heap back with V8's own collector", () => {
    const logged = new Logged();
    const release = new MemoryRelease({ logger: logged, checkEveryMs: 3_600_000, growthBytes: 64 * MIB });
    try {
      // ~190 MiB of small objects kept alive together, like records in flight, then dropped.
      let burst: Array<{ key: string; value: number[] }> | undefined = [];
      for (let i = 0; i < 1_000_000; i++) burst.push({ key: `key:${i}`, value: [i, i + 1, i + 2, i + 3] });
      const grown = getHeapStatistics().total_physical_size;
      assert.ok(burst.length > 0);
      burst = undefined;
      assert.equal(release.releaseIfGrown('test'), true);
      const after = getHeapStatistics().total_physical_size;
      assert.ok(
        after < grown - 64 * MIB,
        `heap pages ${Math.round(grown / MIB)} MiB -> ${Math.round(after / MIB)} MiB`,
      );
      assert.deepEqual(logged.reasons, ['test']);
    } finally {
      release.close();
    }
  });
});
