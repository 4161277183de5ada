import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { humanBytes, humanDuration, statusLines, statusObject } from '../../../src/cli/commands/status-format.js';
import { NodeState, type StatusReply } from '../../../src/client/index.js';

const NOW = Date.parse('2026-12-01T12:00:00.000Z');

function reply(overrides: Partial<StatusReply> = {}): StatusReply {
  return {
    state: NodeState.NODE_STATE_SERVING,
    version: '0.1.0',
    logKind: 'kafka',
    logDescription: 'brokers 127.0.0.1:9092, topic kvs2',
    partitions: [
      { partition: 0, appliedOffset: 120, endOffset: 120, lagRecords: 0 },
      { partition: 1, appliedOffset: 7, endOffset: 1007, lagRecords: 1000 },
    ],
    keys: 42,
    storeBytes: 3 * 1024 * 1024 + 512 * 1024,
    storeLeafFill: 0.674,
    lastCaughtUpUnixMs: NOW - 3723_000,
    token: Buffer.from([1, 2, 3, 250]),
    uptimeSeconds: 90_061.5,
    ...overrides,
  };
}

describe('kvs2 status output', () => {
  test('text: state, version, log, total lag, keys, store size and fill, last caught up, uptime, token, then partitions', () => {
    assert.deepEqual(statusLines(reply(), NOW), [
      'state           serving',
      'version         0.1.0',
      'log             kafka (brokers 127.0.0.1:9092, topic kvs2)',
      'lag             1000 records',
      'keys            42',
      'store size      3.5 MiB (3670016 bytes)',
      'store pages     67% as full as in key order (kvs2 compact on the stopped node would repack them)',
      'last caught up  2026-12-01T10:57:57.000Z (1h 2m 3s ago)',
      'uptime          1d 1h 1m 1s',
      'token           AQID+g==',
      '',
      'partition  applied  end   lag',
      '0          120      120   0',
      '1          7        1007  1000',
    ]);
  });

  test('text: an end not known yet shows as ?, a node never caught up as never, an unknown state by number', () => {
    const lines = statusLines(
      reply({
        state: 9 as NodeState,
        partitions: [{ partition: 0, appliedOffset: 5, endOffset: -1, lagRecords: -1 }],
        lastCaughtUpUnixMs: 0,
        logDescription: '',
        logKind: 'embedded',
        storeLeafFill: 0,
      }),
      NOW,
    );
    // A node that does not say how full its pages are (older, or empty) gets no line for it.
    assert.equal(lines.filter((line) => line.startsWith('store pages')).length, 0);
    assert.equal(lines[0], 'state           unknown (9)');
    assert.equal(lines[2], 'log             embedded');
    assert.equal(lines[3], 'lag             0+ records (the log end of some partitions is not known yet)');
    assert.equal(lines[6], 'last caught up  never');
    assert.deepEqual(lines.slice(-2), ['partition  applied  end  lag', '0          5        ?    ?']);
  });

  test('json: names for states, null for what is not known, ISO time, base64 token', () => {
    assert.deepEqual(statusObject(reply({ state: NodeState.NODE_STATE_LAGGING })), {
      state: 'lagging',
      version: '0.1.0',
      log: { kind: 'kafka', description: 'brokers 127.0.0.1:9092, topic kvs2' },
      partitions: [
        { partition: 0, appliedOffset: 120, endOffset: 120, lagRecords: 0 },
        { partition: 1, appliedOffset: 7, endOffset: 1007, lagRecords: 1000 },
      ],
      keys: 42,
      storeBytes: 3670016,
      storeLeafFill: 0.674,
      lastCaughtUp: '2026-12-01T10:57:57.000Z',
      uptimeSeconds: 90_061.5,
      token: 'AQID+g==',
    });
    const starting = statusObject(
      reply({
        state: NodeState.NODE_STATE_STARTING,
        partitions: [{ partition: 0, appliedOffset: 0, endOffset: -1, lagRecords: -1 }],
        lastCaughtUpUnixMs: 0,
      }),
    );
    assert.equal(starting.state, 'starting');
    assert.deepEqual(starting.partitions, [{ partition: 0, appliedOffset: 0, endOffset: null, lagRecords: null }]);
    assert.equal(starting.lastCaughtUp, null);
    assert.equal(statusObject(reply({ storeLeafFill: 0 })).storeLeafFill, null);
  });

  test('text: pages in key order already get no advice to compact', () => {
    const lines = statusLines(reply({ storeLeafFill: 0.981 }), NOW);
    assert.ok(lines.includes('store pages     98% as full as in key order'), lines.join('\n'));
  });

  test('sizes in binary units and durations in d/h/m/s', () => {
    assert.deepEqual([0, 1023, 1024, 1536, 5 * 1024 ** 3].map(humanBytes), [
      '0 B',
      '1023 B',
      '1.0 KiB',
      '1.5 KiB',
      '5.0 GiB',
    ]);
    assert.deepEqual([0, 12.34, 60, 3600, 86_400 + 61].map(humanDuration), [
      '0s',
      '12.3s',
      '1m 0s',
      '1h 0m 0s',
      '1d 0h 1m 1s',
    ]);
  });
});
