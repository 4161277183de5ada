import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type CasTarget, type CounterRead, kvs2CasTarget } from '../../bench/lib/cas-targets.js';
import { runCasWorkload } from '../../bench/lib/cas-workload.js';
import type { CasPoint } from '../../bench/lib/results.js';
import { casSection } from '../../bench/report/markdown.js';
import { tempDir } from '../support/paths.js';
import { ServerProcess } from '../support/server-process.js';

/**
 * Counters in memory (an implementation of the suite's own CasTarget). Each call yields to the event loop
 * first, so workers move in lockstep: they all read before any of them writes, as on a busy server.
 * `compare: false` writes whatever it is given: the lost update the check must catch.
 */
function memoryTarget(options: { compare: boolean; failAppliedWrites?: number }): CasTarget {
  const counters = new Map<string, { counter: number; version: number }>();
  let failuresLeft = options.failAppliedWrites ?? 0;
  const tick = () => new Promise<void>((resolve) => setImmediate(resolve));
  return {
    readDescription: 'memory',
    async read(_worker, key): Promise<CounterRead> {
      await tick();
      return counters.get(key.toString()) ?? { counter: 0, version: 0 };
    },
    async conditionalWrite(_worker, key, next, expected) {
      await tick();
      const current = counters.get(key.toString()) ?? { counter: 0, version: 0 };
      if (options.compare && current.version !== expected) return false;
      counters.set(key.toString(), { counter: next, version: current.version + 1 });
      if (failuresLeft > 0) {
        failuresLeft--;
        throw new Error('the answer was lost (the write happened)');
      }
      return true;
    },
    finalCounter: async (key) => counters.get(key.toString())?.counter ?? 0,
    close() {},
  };
}

test('cas workload: with compare-and-set the counters add up, and contention shows as conflicts', async () => {
  const result = await runCasWorkload(memoryTarget({ compare: true }), {
    concurrency: 8,
    keys: 2,
    durationSec: 0.2,
    keyPrefix: 'c:',
  });
  assert.ok(result.check.ok, JSON.stringify(result.check));
  assert.ok(result.successes > 0);
  assert.equal(result.check.found, result.successes);
  // Four workers read each counter before any writes: three of every four writes conflict.
  assert.ok(result.conflicts >= result.successes, `${result.conflicts} conflicts, ${result.successes} successes`);
  assert.equal(result.errors, 0);
  assert.ok(result.writeLatencyMs.p50 !== null && result.writeLatencyMs.p99 !== null);
});

test('cas workload: a system that loses updates fails the check', async () => {
  const result = await runCasWorkload(memoryTarget({ compare: false }), {
    concurrency: 4,
    keys: 1,
    durationSec: 0.1,
    keyPrefix: 'lost:',
  });
  assert.equal(result.check.ok, false);
  assert.ok(result.check.found < result.check.expected, JSON.stringify(result.check));
  assert.equal(result.check.mismatches[0]?.key, 'lost:0000');
});

test('cas workload: a write of unknown outcome may have happened, and the check allows it', async () => {
  const result = await runCasWorkload(memoryTarget({ compare: true, failAppliedWrites: 3 }), {
    concurrency: 1,
    keys: 1,
    durationSec: 0.1,
    keyPrefix: 'unknown:',
  });
  assert.equal(result.errors, 3);
  assert.equal(result.firstError, 'the answer was lost (the write happened)');
  assert.ok(result.check.ok, JSON.stringify(result.check));
  assert.equal(result.check.found, result.successes + 3);
});

let dir: { path: string; remove: () => Promise<void> };
let server: ServerProcess;

before(async () => {
  dir = await tempDir('cas-bench');
  server = await ServerProcess.start({ dataDir: dir.path });
  await server.waitUntilCaughtUp();
});

after(async () => {
  await server?.stop();
  await dir?.remove();
});

test('cas workload on a real node: conditional Sets over gRPC, contended, add up exactly', async () => {
  const target = kvs2CasTarget(server.address, 2);
  try {
    const result = await runCasWorkload(target, { concurrency: 6, keys: 2, durationSec: 1, keyPrefix: 'node:' });
    assert.equal(result.errors, 0, result.firstError);
    assert.ok(result.successes > 0);
    assert.ok(result.check.ok, JSON.stringify(result.check));
    assert.equal(result.check.found, result.successes);
  } finally {
    target.close();
  }
});

function casPoint(system: string, incrementsPerSec: number, p99: number, checked = true): CasPoint {
  const spread = (median: number) => ({ median, min: median, max: median });
  return {
    system,
    contended: false,
    concurrency: 16,
    keys: 16,
    read: `${system} read`,
    write: `${system} write`,
    connections: 4,
    samples: [
      {
        successes: incrementsPerSec * 5,
        conflicts: 0,
        errors: 0,
        seconds: 5,
        incrementsPerSec,
        conflictsPerSuccess: 0,
        writeLatencyMs: { mean: p99 / 2, p50: p99 / 2, p99, p999: p99 },
        readLatencyMs: { mean: 1, p50: 1, p99: 2, p999: 2 },
        serverCpuSecPer1kIncrements: 0.5,
        coreBusyPercent: [90, 50],
        loadAverage1m: 1,
        check: { ok: checked, expected: incrementsPerSec * 5, found: checked ? incrementsPerSec * 5 : 1 },
      },
    ],
    incrementsPerSec: spread(incrementsPerSec),
    conflictsPerSuccess: spread(0),
    p50Ms: spread(p99 / 2),
    p99Ms: spread(p99),
    p999Ms: spread(p99),
    readP50Ms: spread(1),
    readP99Ms: spread(2),
    serverCpuSecPer1kIncrements: spread(0.5),
    errors: 0,
    checked,
  };
}

test('cas report: every system in the table, kvs2 ÷ etcd point by point, a failed check shown', () => {
  const text = casSection([
    casPoint('kvs2', 2_000, 8),
    casPoint('kvs2-kafka', 500, 40, false),
    casPoint('etcd', 1_000, 10),
  ]).join('\n');
  assert.match(
    text,
    /\| kvs2 \| 16 workers, a counter each \| 2,000 \(2,000–2,000\) \| 0\.00 \| 4\.00 \| 8\.00 \| 8\.00 \| 1\.00 \| 2\.00 \|/,
  );
  assert.match(text, /\| kvs2-kafka \| .* \| FAILED \|/);
  assert.match(text, /\| Load \| kvs2 ÷ etcd increments\/s \| kvs2-kafka ÷ etcd increments\/s \|/);
  assert.match(text, /\| 16 workers, a counter each \| 2\.00 \| 0\.50 \| 0\.80 \| 4\.00 \|/);
});
