import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '../../src/logger.js';
import type { AppliedChange } from '../../src/replica/change-feed.js';
import { Replica } from '../../src/replica/replica.js';
import { LmdbStore } from '../../src/store/lmdb-store.js';
import type { Store } from '../../src/store/store.js';
import { eventually } from '../support/grpc-clients.js';
import { MemoryLog } from '../support/memory-log.js';
import { tempDir } from '../support/paths.js';

const logger = createLogger('silent');
const b = (text: string): Buffer => Buffer.from(text);

/** The watermark and the change feed the replica publishes, on an in-memory log and a temporary store. */
describe('Replica watermark and change feed', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir('replica-views');
  });
  after(async () => {
    await dir.remove();
  });

  async function start(name: string, wrapStore: (store: Store) => Store = (store) => store) {
    const log = new MemoryLog({ partitions: 2 });
    const store = wrapStore(LmdbStore.open(`${dir.path}/${name}`));
    const replica = new Replica({ log, store, logger, onFatal: () => {} });
    await replica.start(await log.open());
    return {
      log,
      store,
      replica,
      close: async () => {
        await replica.stop();
        await log.close();
        await store.close();
      },
    };
  }

  test('waitFor resolves once the write is applied and visible, and rejects with the abort when it comes first', async () => {
    const node = await start('wait');
    const { watermark } = node.replica;
    node.log.pauseAppends();
    const pending = node.log.append(b('k'), b('v'));
    const late = new AbortController();
    const waiting = watermark.waitFor(new Map([[node.log.partitionOf(b('k')), 1]]), late.signal);
    late.abort();
    await assert.rejects(waiting, { code: 'CANCELLED' });
    node.log.resumeAppends();
    const position = await pending;
    const versionBefore = watermark.appliedVersion;
    await watermark.waitFor(new Map([[position.partition, position.offset + 1]]), new AbortController().signal);
    assert.deepEqual(node.store.get(b('k')), b('v'));
    assert.ok(watermark.appliedVersion > versionBefore);
    assert.equal(watermark.appliedOffsets.get(position.partition), position.offset + 1);
    await node.close();
  });

  test('the feed announces applied batches to subscribers from their `from` on, and a reset when the log is recreated', async () => {
    const node = await start('feed');
    const { changes, watermark } = node.replica;
    await node.log.append(b('before'), b('1'));
    await eventually(() => watermark.appliedOffsets.size > 0, 5000, 'the first write to apply');
    const heard: AppliedChange[] = [];
    const subscription = changes.subscribe((change) => heard.push(change));
    assert.deepEqual(subscription.from, watermark.appliedOffsets);
    await node.log.append(b('after'), null);
    await eventually(() => heard.length > 0, 5000, 'a change');
    assert.deepEqual(
      heard.flatMap((c) => (c.kind === 'applied' ? c.records.map((r) => [r.key?.toString(), r.value]) : [])),
      [['after', null]],
    );
    const oldIdentity = watermark.logIdentity;
    const waitingOnOldLog = watermark.waitFor(new Map([[0, 1000]]), new AbortController().signal);
    node.log.recreate();
    await assert.rejects(waitingOnOldLog, { code: 'LOG_RECREATED' });
    await eventually(() => heard.some((c) => c.kind === 'reset'), 5000, 'a reset');
    await eventually(() => watermark.logIdentity !== oldIdentity, 5000, 'the new log adopted');
    subscription.unsubscribe();
    await node.close();
  });

  test('a subscriber that joins while a batch is being committed hears that batch: nothing falls between', async (t) => {
    let onApply: (() => void) | undefined;
    // The real store; only the moment inside its commit is made observable, to subscribe right there.
    const node = await start('join-mid-commit', (store) => {
      const apply: Store['apply'] = (...args) => {
        const applying = store.apply(...args);
        onApply?.();
        return applying;
      };
      return new Proxy(store, {
        get: (target, name) => {
          if (name === 'apply') return apply;
          const value: unknown = Reflect.get(target, name, target);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
    });
    t.after(() => node.close());
    const { changes } = node.replica;
    const heard: AppliedChange[] = [];
    let subscription: ReturnType<typeof changes.subscribe> | undefined;
    onApply = () => {
      onApply = undefined;
      subscription = changes.subscribe((change) => heard.push(change));
    };
    const position = await node.log.append(b('mid'), b('commit'));
    await eventually(() => heard.length > 0, 5000, 'the batch committed while subscribing');
    assert.equal(subscription?.from.get(position.partition) ?? 0, position.offset, 'from is before the batch');
    assert.deepEqual(
      heard.flatMap((c) =>
        c.kind === 'applied' ? c.records.map((r) => [r.key?.toString(), r.value?.toString()]) : [],
      ),
      [['mid', 'commit']],
    );
    subscription?.unsubscribe();
  });
});
