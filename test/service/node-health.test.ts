import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { PartitionLag, ReplicaProgressUpdates, ReplicaProgressView } from '../../src/replica/replica-progress.js';
import { NodeHealth, type NodeStateName } from '../../src/service/node-health.js';

/** A ReplicaProgressView whose lag the test sets, telling listeners as the replica does on a new end. */
class SetProgress implements ReplicaProgressView, ReplicaProgressUpdates {
  #lags: Array<number | null> = [null];
  readonly #listeners = new Set<() => void>();

  set(...lags: Array<number | null>): void {
    this.#lags = lags;
    for (const listener of this.#listeners) listener();
  }

  partitions(): readonly PartitionLag[] {
    return this.#lags.map((lagRecords, partition) => ({
      partition,
      appliedOffset: 100,
      endOffset: lagRecords === null ? null : 100 + lagRecords,
      lagRecords,
    }));
  }

  lastCaughtUpAtMs(): number | null {
    return null;
  }

  bootstrapRatio(): number {
    return 0;
  }

  onUpdate(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

function watched(maxReadyLag: number) {
  const progress = new SetProgress();
  const health = new NodeHealth({ progress, maxReadyLag });
  const seen: Array<[NodeStateName, boolean, boolean]> = [];
  health.onChange(() => seen.push([health.state(), health.live(), health.ready()]));
  return { progress, health, seen };
}

describe('NodeHealth: starting → serving ⇄ lagging → stopping', () => {
  test('starting until listening and caught up; not live before listening, live while starting', () => {
    const { health, seen } = watched(0);
    assert.deepEqual([health.state(), health.live(), health.ready()], ['starting', false, false]);
    health.listening();
    assert.deepEqual([health.state(), health.live(), health.ready()], ['starting', true, false]);
    health.caughtUp(true);
    assert.deepEqual([health.state(), health.live(), health.ready()], ['serving', true, true]);
    assert.deepEqual(seen, [
      ['starting', true, false],
      ['serving', true, true],
    ]);
  });

  test('without a max ready lag, any lag keeps a caught-up node serving; a rebuild makes it lagging', () => {
    const { progress, health } = watched(0);
    health.listening();
    health.caughtUp(true);
    progress.set(1_000_000, 5);
    assert.equal(health.state(), 'serving');
    health.caughtUp(false);
    assert.equal(health.state(), 'lagging');
    assert.equal(health.live(), true);
    health.caughtUp(true);
    assert.equal(health.state(), 'serving');
  });

  test('with a max ready lag: lagging while the total lag exceeds it, serving once within it', () => {
    const { progress, health, seen } = watched(100);
    health.listening();
    health.caughtUp(true);
    progress.set(60, 40);
    assert.equal(health.state(), 'serving', 'exactly the maximum is still ready');
    progress.set(60, 41);
    assert.equal(health.state(), 'lagging');
    assert.equal(health.ready(), false);
    progress.set(1, null);
    assert.equal(health.state(), 'serving', 'an unknown end counts for nothing');
    assert.equal(health.lagRecords(), 1);
    assert.deepEqual(
      seen.map(([state]) => state),
      ['starting', 'serving', 'lagging', 'serving'],
    );
  });

  test('a first catch-up still too far behind stays starting: lagging is for nodes that were ready', () => {
    const { progress, health } = watched(10);
    health.listening();
    progress.set(50);
    health.caughtUp(true);
    assert.equal(health.state(), 'starting');
    progress.set(10);
    assert.equal(health.state(), 'serving');
  });

  test('stopping is final: neither live nor ready, whatever the replica says next', () => {
    const { progress, health, seen } = watched(10);
    health.listening();
    health.caughtUp(true);
    health.stopping();
    assert.deepEqual([health.state(), health.live(), health.ready()], ['stopping', false, false]);
    health.caughtUp(true);
    progress.set(0);
    health.caughtUp(false);
    assert.equal(health.state(), 'stopping');
    assert.deepEqual(seen.at(-1), ['stopping', false, false]);
    assert.equal(seen.filter(([state]) => state === 'stopping').length, 1);
  });

  test('an unsubscribed listener hears nothing more', () => {
    const { health } = watched(0);
    let calls = 0;
    const unsubscribe = health.onChange(() => calls++);
    health.listening();
    unsubscribe();
    health.caughtUp(true);
    assert.equal(calls, 1);
  });
});
