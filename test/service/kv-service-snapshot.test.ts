import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Kvs2Error } from '../../src/errors.js';
import { decodeSnapshot } from '../../src/snapshot/snapshot-decoder.js';
import type { SnapshotEncoder } from '../../src/snapshot/snapshot-encoder.js';
import type { SnapshotMetadata } from '../../src/snapshot/snapshot-format.js';
import { assertFails, b, noDeadline } from '../support/service-calls.js';
import { startLiveNode, startSteppedNode } from '../support/service-node.js';

/** The metadata and every entry (key → value, as text) of an encoder's whole stream, checked to its trailer. */
async function contentOf(
  encoder: SnapshotEncoder,
): Promise<{ metadata: SnapshotMetadata; entries: Map<string, string> }> {
  let metadata: SnapshotMetadata | undefined;
  const entries = new Map<string, string>();
  let ended = false;
  for await (const part of decodeSnapshot(encoder)) {
    if (part.kind === 'metadata') metadata = part.metadata;
    else if (part.kind === 'entries') {
      for (const { key, value } of part.entries)
        entries.set(Buffer.from(key).toString(), Buffer.from(value).toString());
    } else ended = true;
  }
  assert.ok(metadata !== undefined && ended);
  return { metadata, entries };
}

/** Until the wall clock has moved past `ms`, so that "later than" means something. */
async function clockPast(ms: number): Promise<void> {
  while (Date.now() <= ms) await new Promise((resolve) => setImmediate(resolve));
}

describe('KvService.snapshot', () => {
  test('waits for the replica to apply what the log held, so it holds every acknowledged write; caughtUpAt is when it asked', async () => {
    const node = await startSteppedNode();
    try {
      await node.service.set({ key: b('a'), value: b('1'), waitForApply: false }, noDeadline());
      await node.service.set({ key: b('b'), value: b('2'), waitForApply: false }, noDeadline());
      const asked = Date.now();
      const pending = node.service.snapshot(new AbortController().signal);
      // Nothing is applied yet: only the replica applying the log lets the snapshot be taken.
      await node.replica.applyAll();
      const { metadata, entries } = await contentOf(await pending);
      assert.deepEqual(
        [...entries],
        [
          ['a', '1'],
          ['b', '2'],
        ],
      );
      assert.deepEqual([...metadata.appliedOffsets], [[0, 2]]);
      // The stepped replica never saves a catch-up time: this one is the snapshot's own.
      assert.equal(node.store.progress().caughtUpAt, null);
      assert.ok(metadata.caughtUpAt !== null && metadata.caughtUpAt >= asked, String(metadata.caughtUpAt));
      assert.ok(metadata.caughtUpAt <= metadata.createdAt);
    } finally {
      await node.close();
    }
  });

  test("an idle caught-up node's snapshot is dated now, not by the older catch-up time its store saved", async () => {
    const node = await startLiveNode();
    try {
      await node.service.set({ key: b('k'), value: b('v'), waitForApply: true }, noDeadline());
      const saved = node.store.progress().caughtUpAt;
      assert.ok(saved !== null);
      await clockPast(saved);
      const asked = Date.now();
      const { metadata } = await contentOf(await node.service.snapshot(new AbortController().signal));
      assert.ok(metadata.caughtUpAt !== null && metadata.caughtUpAt >= asked && metadata.caughtUpAt > saved);
    } finally {
      await node.close();
    }
  });

  test("a node that cannot learn the log's end gives what it holds, dated by its store's saved catch-up time", async () => {
    const node = await startLiveNode({
      appender: (log) => ({
        append: (key, value, signal) => log.append(key, value, signal),
        endOffsets: () => Promise.reject(new Kvs2Error('LOG_UNAVAILABLE', 'the log cannot say where it ends')),
      }),
    });
    try {
      await node.service.set({ key: b('k'), value: b('v'), waitForApply: true }, noDeadline());
      const saved = node.store.progress().caughtUpAt;
      await clockPast(saved ?? 0);
      const { metadata, entries } = await contentOf(await node.service.snapshot(new AbortController().signal));
      assert.deepEqual([...entries], [['k', 'v']]);
      assert.equal(metadata.caughtUpAt, saved);
    } finally {
      await node.close();
    }
  });

  test('cancelled while it waits for the replica: CANCELLED, and no snapshot is taken', async () => {
    const node = await startSteppedNode();
    try {
      await node.service.set({ key: b('a'), value: b('1'), waitForApply: false }, noDeadline());
      const stop = new AbortController();
      const pending = node.service.snapshot(stop.signal);
      stop.abort();
      await assertFails(() => pending, 'CANCELLED');
    } finally {
      await node.close();
    }
  });

  test('after close: SHUTTING_DOWN', async () => {
    const node = await startLiveNode();
    try {
      node.service.close();
      await assertFails(() => node.service.snapshot(new AbortController().signal), 'SHUTTING_DOWN');
    } finally {
      await node.close();
    }
  });
});
