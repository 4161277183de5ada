import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { MemoryResult, PeerBootstrapResult, Results } from '../../bench/lib/results.js';
import { renderMarkdown } from '../../bench/report/markdown.js';
import { evaluateTargets } from '../../bench/report/targets.js';

const spread = (median: number) => ({ median, min: median, max: median });

function memory(system: string, rssMiB: number): MemoryResult {
  const rss = rssMiB * 1024 * 1024;
  return {
    system,
    keys: 1_000_000,
    valueBytes: 100,
    rssBytes: rss,
    diskBytes: null,
    details: {},
    rssBytesPerMillionKeys: rss,
    diskBytesPerMillionKeys: null,
  };
}

function results(peer: PeerBootstrapResult, memoryResults: MemoryResult[]): Results {
  return {
    suite: 'kvs2-bench',
    version: 1,
    startedAt: '2026-12-02T00:00:00Z',
    finishedAt: '2026-12-02T00:10:00Z',
    wallSeconds: 600,
    options: { keys: 1_000_000, valueBytes: 100 },
    machine: { cores: 2, loadAverage: '0.1 0.1 0.1' },
    tools: {},
    systems: {},
    points: [],
    loads: [],
    memory: memoryResults,
    kafkaProducer: null,
    bootstrap: {
      records: 1_000_000,
      kvs2: {
        servingSec: spread(5),
        recordsPerSec: spread(200_000),
        samples: [5],
        catchUpOnlySec: spread(4),
      },
      kcat: { seconds: spread(1.25), recordsPerSec: spread(800_000), samples: [1.25] },
      ratio: 0.25,
      peer,
    },
    skipped: [],
    notes: [],
    profile: null,
  };
}

function peerAt(recordsPerSec: number): PeerBootstrapResult {
  return {
    keys: 1_000_000,
    servingSec: spread(1_000_000 / recordsPerSec),
    recordsPerSec: spread(recordsPerSec),
    catchUpOnlySec: spread(0.5),
    catchUpOnlyRecordsPerSec: spread(2_000_000),
    keysPerSec: spread(recordsPerSec),
    peerLoadSec: spread(0.4),
    samples: [1_000_000 / recordsPerSec],
    ratioToKcat: recordsPerSec / 800_000,
  };
}

const target = (r: Results, name: string) => evaluateTargets(r, 100).find((t) => t.target.startsWith(name));

test("peer bootstrap target: met at 2× kcat's records/s spawn → SERVING, not below", () => {
  assert.equal(target(results(peerAt(1_600_000), []), 'Bootstrap from a peer')?.met, true);
  const slow = target(results(peerAt(1_000_000), []), 'Bootstrap from a peer');
  assert.equal(slow?.met, false);
  assert.match(slow?.measured ?? '', /1\.25× spawn → SERVING; listening → SERVING 2,000,000 records\/s = 2\.50×/);
});

test("peer-bootstrapped node's RSS target: against Redis's of the same run; unmeasured without one", () => {
  const name = 'A node bootstrapped from a peer';
  const redis = memory('redis', 210);
  assert.equal(target(results(peerAt(1e6), [redis, memory('kvs2-peer-bootstrapped', 200)]), name)?.met, true);
  assert.equal(target(results(peerAt(1e6), [redis, memory('kvs2-peer-bootstrapped', 250)]), name)?.met, false);
  assert.equal(target(results(peerAt(1e6), [memory('kvs2-peer-bootstrapped', 200)]), name)?.met, null);
});

test('the bootstrap table has the peer rows beside kcat', () => {
  const markdown = renderMarkdown(results(peerAt(1_000_000), []), null);
  assert.match(markdown, /\| kcat -C -e -o beginning \| 1\.25 \| 800,000 \(800,000–800,000\) \|/);
  assert.match(markdown, /\| kvs2 --bootstrap-from a serving peer \(spawn → SERVING\) \| 1\.00 \| 1,000,000/);
  assert.match(markdown, /\| kvs2 --bootstrap-from, catch-up alone \(listening → SERVING\) \| 0\.50 \| 2,000,000/);
});
