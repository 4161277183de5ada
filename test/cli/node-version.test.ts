import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from '../support/paths.js';

interface PackageJson {
  engines: { node: string };
  devDependencies: { node: string };
}

test('one answer to "which Node": .node-version is the node devDependency, and both satisfy engines', async () => {
  const pkg = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as PackageJson;
  const nodeVersion = (await readFile(join(REPO_ROOT, '.node-version'), 'utf8')).trim();
  assert.equal(nodeVersion, pkg.devDependencies.node);
  // bin/kvs2.js reads engines in this form to refuse an older Node.
  const required = /^>=\s*(\d+)$/.exec(pkg.engines.node);
  assert.ok(required, `engines.node "${pkg.engines.node}" is not ">=MAJOR"`);
  assert.ok(Number(nodeVersion.split('.')[0]) >= Number(required[1]), `${nodeVersion} is older than engines`);
  assert.ok(Number(process.versions.node.split('.')[0]) >= Number(required[1]), `the tests run on ${process.version}`);
});
