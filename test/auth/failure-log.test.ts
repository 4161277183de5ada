import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { AuthFailureLog } from '../../src/auth/failure-log.js';
import { createLogger } from '../../src/logger.js';

test('refused calls are logged at most 20 lines per window, the rest summed in one line', () => {
  const lines: Array<{ msg: string; [field: string]: unknown }> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const text of chunk.toString().split('\n')) if (text !== '') lines.push(JSON.parse(text));
      done();
    },
  });
  const failures = new AuthFailureLog(createLogger('info', sink));
  for (let i = 0; i < 50; i++) {
    failures.record({
      reason: 'bad_token',
      identity: null,
      method: 'Get',
      peer: `10.0.0.1:${i}`,
      message: 'unknown bearer token',
    });
  }
  failures.close();
  const refused = lines.filter((l) => l.msg === 'call refused: unknown bearer token');
  assert.equal(refused.length, 20);
  assert.deepEqual([refused[0]?.reason, refused[0]?.method, refused[0]?.peer], ['bad_token', 'Get', '10.0.0.1:0']);
  const summary = lines.filter((l) => l.msg.startsWith('30 more refused calls not logged'));
  assert.equal(summary.length, 1);
  assert.equal(summary[0]?.suppressed, 30);
});
