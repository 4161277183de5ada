import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { protoPath } from 'grpc-health-check';
import { REPO_ROOT } from '../support/paths.js';

test('reflection describes the health service that grpc-health-check implements: the vendored health.proto is its own', async () => {
  const vendored = await readFile(join(REPO_ROOT, 'proto', 'grpc', 'health', 'v1', 'health.proto'), 'utf8');
  assert.equal(vendored, await readFile(protoPath, 'utf8'));
});
