import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type LogFacts, planResume } from '../../src/replica/resume-plan.js';
import type { StoreProgress } from '../../src/store/store.js';

const kafka: LogFacts = {
  description: 'Kafka topic t',
  identity: 'kafka:A',
  retainsHistory: true,
  tombstoneRetentionMs: 60_000,
  startOffsets: new Map([
    [0, 0],
    [1, 0],
  ]),
};
const embedded: LogFacts = { ...kafka, identity: 'embedded:E', retainsHistory: false, tombstoneRetentionMs: null };
const NOW = 1_000_000_000;
const progress = (over: Partial<StoreProgress> = {}): StoreProgress => ({
  logIdentity: 'kafka:A',
  appliedOffsets: new Map([
    [0, 10],
    [1, 5],
  ]),
  caughtUpAt: NOW - 1000,
  ...over,
});

describe('planResume', () => {
  test('an empty store starts from the beginning without a rebuild', () => {
    assert.deepEqual(planResume({ logIdentity: null, appliedOffsets: new Map(), caughtUpAt: null }, kafka, NOW), {
      kind: 'resume',
    });
  });

  test('a store that was caught up recently resumes', () => {
    assert.deepEqual(planResume(progress(), kafka, NOW), { kind: 'resume' });
  });

  test('a recreated log means a rebuild on Kafka and a refusal on the embedded log', () => {
    const plan = planResume(progress({ logIdentity: 'kafka:OLD' }), kafka, NOW);
    assert.equal(plan.kind, 'rebuild');
    assert.match((plan as { reason: string }).reason, /kafka:OLD.*kafka:A/);
    assert.equal(planResume(progress({ logIdentity: 'embedded:OLD' }), embedded, NOW).kind, 'refuse');
  });

  test('records removed by retention before the store saw them mean a rebuild', () => {
    const plan = planResume(progress(), { ...kafka, startOffsets: new Map([[0, 11]]) }, NOW);
    assert.equal(plan.kind, 'rebuild');
    assert.match((plan as { reason: string }).reason, /partition 0 now starts at offset 11/);
  });

  test('away for the tombstone retention or longer means a rebuild, just under it does not', () => {
    assert.equal(planResume(progress({ caughtUpAt: NOW - 59_999 }), kafka, NOW).kind, 'resume');
    const plan = planResume(progress({ caughtUpAt: NOW - 60_000 }), kafka, NOW);
    assert.equal(plan.kind, 'rebuild');
    assert.match((plan as { reason: string }).reason, /delete\.retention\.ms = 60000/);
  });

  test('a store never known to be caught up, on a log with tombstone retention, is rebuilt', () => {
    assert.equal(planResume(progress({ caughtUpAt: null }), kafka, NOW).kind, 'rebuild');
  });
});
