import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Authorizer, type CallerInfo } from '../../src/auth/authorizer.js';
import { hashToken } from '../../src/auth/token-hash.js';
import { isKvs2Error } from '../../src/errors.js';
import { createLogger } from '../../src/logger.js';
import { tempDir } from '../support/paths.js';

let dir: Awaited<ReturnType<typeof tempDir>>;
let authorizer: Authorizer;

const caller = (token: string): CallerInfo => ({ token, certificateName: undefined, method: 'Get', peer: 'test' });
const codeOf = (error: unknown): string => (isKvs2Error(error) ? error.code : String(error));

before(async () => {
  dir = await tempDir('authorizer');
  const file = join(dir.path, 'auth.json');
  await writeFile(
    file,
    JSON.stringify({ tokens: { alice: await hashToken('alice-secret') }, permissions: { alice: [] } }),
  );
  authorizer = new Authorizer({ file, logger: createLogger('silent') });
});
after(async () => {
  authorizer.close();
  await dir.remove();
});

test('a flood of unknown tokens is bounded: beyond a few verifications at once, new tokens are OVERLOADED', async () => {
  const outcomes = await Promise.allSettled(
    Array.from({ length: 50 }, async (_, i) => authorizer.authenticate(caller(`random-${i}`))),
  );
  const codes = outcomes.map((o) => (o.status === 'rejected' ? codeOf(o.reason) : 'ACCEPTED'));
  const unauthenticated = codes.filter((c) => c === 'UNAUTHENTICATED').length;
  const overloaded = codes.filter((c) => c === 'OVERLOADED').length;
  assert.equal(unauthenticated + overloaded, 50, codes.join(','));
  assert.ok(unauthenticated >= 1 && unauthenticated <= 4, `verified at once: ${unauthenticated}`);
  // A token refused once is refused from memory, at once, without another scrypt.
  assert.throws(
    () => authorizer.authenticate(caller('random-0')),
    (e) => codeOf(e) === 'UNAUTHENTICATED',
  );
});

test('a verified token is answered from memory, and unknown tokens never push it out', async () => {
  assert.equal(await authorizer.authenticate(caller('alice-secret')), 'alice');
  for (let round = 0; round < 3; round++) {
    await Promise.allSettled(
      Array.from({ length: 4 }, async (_, i) => authorizer.authenticate(caller(`noise-${round}-${i}`))),
    );
  }
  // Synchronous: no verification needed.
  assert.equal(authorizer.authenticate(caller('alice-secret')), 'alice');
});
