import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { Kvs2Error } from '../../src/errors.js';
import { MeteredLog } from '../../src/metrics/metered-log.js';
import { MemoryLog } from '../support/memory-log.js';
import { parsePrometheusText, sampleValue } from '../support/prometheus-text.js';

test('a metered log counts appends by result, times each, and is otherwise the log it wraps', async () => {
  const registry = new Registry();
  const inner = new MemoryLog({ partitions: 2 });
  const log = new MeteredLog(inner, registry);
  assert.equal(log.description, inner.description);
  assert.equal(log.retainsHistory, inner.retainsHistory);
  assert.equal(await log.open(), await inner.open());

  const signal = new AbortController().signal;
  const positions = await Promise.all([0, 1, 2].map((i) => log.append(Buffer.from(`k${i}`), Buffer.from('v'), signal)));
  assert.deepEqual(await log.endOffsets(signal), await inner.endOffsets());
  assert.equal(positions.length, 3);

  inner.failAppends(new Kvs2Error('LOG_UNAVAILABLE', 'brokers down'));
  await assert.rejects(log.append(Buffer.from('k'), Buffer.from('v'), signal), { code: 'LOG_UNAVAILABLE' });
  await assert.rejects(log.append(Buffer.from('k'), null, AbortSignal.abort(new Kvs2Error('CANCELLED', 'gone'))), {
    code: 'CANCELLED',
  });

  const page = parsePrometheusText(await registry.metrics());
  assert.equal(sampleValue(page, 'kvs2_log_appends_total', { result: 'ok' }), 3);
  assert.equal(sampleValue(page, 'kvs2_log_appends_total', { result: 'error' }), 2);
  assert.equal(page.types.get('kvs2_log_append_seconds'), 'histogram');
  assert.equal(sampleValue(page, 'kvs2_log_append_seconds_count'), 5);
  assert.equal(sampleValue(page, 'kvs2_log_append_seconds_bucket', { le: '+Inf' }), 5);
  assert.ok((sampleValue(page, 'kvs2_log_append_seconds_sum') ?? -1) >= 0);
  await log.close();
});
