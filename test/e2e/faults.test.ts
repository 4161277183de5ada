import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FAULT_KINDS } from '../../scripts/faults/nemesis.js';
import { runFaultCheck } from '../../scripts/faults/run.js';
import { needsKafka } from '../support/kafka-env.js';

// A bounded run of the fault-injection checker (scripts/faults/); `npm run faults` runs it for longer.
describe('under faults: 3 brokers and 3 nodes, nodes and brokers killed, paused and wiped', needsKafka(), () => {
  test('nothing acknowledged is lost, token-chained reads never go back, every node holds the log', {
    timeout: 900_000,
  }, async () => {
    const result = await runFaultCheck({
      seed: 20_260_311,
      loadMs: 45_000,
      everyFaultKind: true,
      log: (line) => process.stderr.write(`faults: ${line}\n`),
    });
    process.stderr.write(`${result.summary}\n`);
    assert.ok(result.ok, result.report);
    assert.deepEqual(new Set(result.counts.faults), new Set(FAULT_KINDS), 'every kind of fault ran');
    // The run proves something only if the cluster took writes and answered reads through the faults.
    assert.ok(result.counts.acknowledgedWrites >= 200, `only ${result.counts.acknowledgedWrites} writes acknowledged`);
    assert.ok(result.counts.answeredReads >= 200, `only ${result.counts.answeredReads} reads answered`);
    // Wiped nodes start empty and install a peer's snapshot (the next peer's when the first is paused).
    assert.ok(result.counts.peerBootstraps >= 2, `${result.counts.peerBootstraps} peer bootstraps`);
  });
});
