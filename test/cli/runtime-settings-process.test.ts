import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { test } from 'node:test';
import { SERVING_SEMI_SPACE_MIB, SINGLE_THREADED_GC_MAX_CORES } from '../../src/cli/runtime-settings.js';
import { tempDir } from '../support/paths.js';
import { ServerProcess } from '../support/server-process.js';

/** The environment the kernel holds for a running process: what glibc's malloc read when it started. */
async function environmentOf(pid: number): Promise<Map<string, string>> {
  const entries = (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0').filter(Boolean);
  return new Map(entries.map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]));
}

/** The command line the running process has: what Node and V8 read when it started. */
async function commandLineOf(pid: number): Promise<string[]> {
  return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(Boolean);
}

const onLinux = process.platform === 'linux' ? false : '/proc is Linux only';
const onGlibc =
  process.platform === 'linux' &&
  typeof (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime ===
    'string';
const inherited =
  process.env.MALLOC_MMAP_THRESHOLD_ === undefined ? false : 'MALLOC_MMAP_THRESHOLD_ is set for the tests';

async function withServer(env: Record<string, string>, check: (pid: number) => Promise<void>): Promise<void> {
  const dir = await tempDir('runtime');
  const server = await ServerProcess.start({ dataDir: dir.path, env });
  try {
    // The pid the caller holds is the serving node's (execve), with what Node, V8 and glibc saw at its start.
    await check(server.child.pid as number);
  } finally {
    assert.equal((await server.stop()).code, 0);
    await dir.remove();
  }
}

test('kvs2 serve runs with an 8 KiB malloc mmap threshold, in the process it was started as', {
  skip: (onGlibc ? false : 'glibc only') || inherited,
}, async () => {
  await withServer({}, async (pid) => {
    assert.equal((await environmentOf(pid)).get('MALLOC_MMAP_THRESHOLD_'), '8192');
  });
});

test("an operator's own MALLOC_MMAP_THRESHOLD_ is kept", { skip: onGlibc ? false : 'glibc only' }, async () => {
  await withServer({ MALLOC_MMAP_THRESHOLD_: '65536' }, async (pid) => {
    assert.equal((await environmentOf(pid)).get('MALLOC_MMAP_THRESHOLD_'), '65536');
  });
});

test("kvs2 serve runs with a small young generation, and a single-threaded collector on this machine's cores if few", {
  skip: onLinux || (process.env.NODE_OPTIONS ? 'NODE_OPTIONS is set for the tests' : false),
}, async () => {
  await withServer({}, async (pid) => {
    const commandLine = await commandLineOf(pid);
    assert.ok(commandLine.includes(`--max-semi-space-size=${SERVING_SEMI_SPACE_MIB}`), commandLine.join(' '));
    // The node runs with the test's CPU affinity.
    const few = availableParallelism() <= SINGLE_THREADED_GC_MAX_CORES;
    assert.equal(commandLine.includes('--single-threaded-gc'), few, commandLine.join(' '));
    // Started once more, not again and again: each flag once.
    assert.equal(commandLine.filter((arg) => arg.startsWith('--max-semi-space-size')).length, 1);
  });
});

test("an operator's own young generation size and collector choice are kept", { skip: onLinux }, async () => {
  await withServer({ NODE_OPTIONS: '--max-semi-space-size=8' }, async (pid) => {
    const commandLine = await commandLineOf(pid);
    assert.ok(!commandLine.some((arg) => arg.startsWith('--max-semi-space-size')), commandLine.join(' '));
    assert.equal((await environmentOf(pid)).get('NODE_OPTIONS'), '--max-semi-space-size=8');
  });
});
