import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { tempDir } from '../support/paths.js';
import { ServerProcess } from '../support/server-process.js';

/** The environment the kernel holds for a running process: what glibc's malloc read when it started. */
async function environmentOf(pid: number): Promise<Map<string, string>> {
  const entries = (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0').filter(Boolean);
  return new Map(entries.map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]));
}

const onGlibc =
  process.platform === 'linux' &&
  typeof (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime ===
    'string';
const skip = onGlibc ? false : 'glibc only';
const inherited =
  process.env.MALLOC_MMAP_THRESHOLD_ === undefined ? false : 'MALLOC_MMAP_THRESHOLD_ is set for the tests';

test('kvs2 serve runs with an 8 KiB malloc mmap threshold, in the process it was started as', {
  skip: skip || inherited,
}, async () => {
  const dir = await tempDir('malloc');
  const server = await ServerProcess.start({ dataDir: dir.path });
  try {
    const pid = server.child.pid as number;
    // The pid the caller holds is the serving node's (execve), with the setting in the environment glibc saw.
    assert.equal((await environmentOf(pid)).get('MALLOC_MMAP_THRESHOLD_'), '8192');
  } finally {
    assert.equal((await server.stop()).code, 0);
    await dir.remove();
  }
});

test("an operator's own MALLOC_MMAP_THRESHOLD_ is kept", { skip }, async () => {
  const dir = await tempDir('malloc');
  const server = await ServerProcess.start({ dataDir: dir.path, env: { MALLOC_MMAP_THRESHOLD_: '65536' } });
  try {
    assert.equal((await environmentOf(server.child.pid as number)).get('MALLOC_MMAP_THRESHOLD_'), '65536');
  } finally {
    assert.equal((await server.stop()).code, 0);
    await dir.remove();
  }
});
