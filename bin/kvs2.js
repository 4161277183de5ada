#!/usr/bin/env node
// The `kvs2` command. The TypeScript sources are compiled to dist/ by `npm install` (or `npm run build`).
import { existsSync, readFileSync } from 'node:fs';
import module from 'node:module';

// npm scripts and npx run this on the Node that the project installs (the `node` devDependency); a bare
// `node` may be older. package.json's engines is the one statement of the Node kvs2 needs.
const { engines } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const required = /^>=\s*(\d+)$/.exec(engines.node);
if (required === null) throw new Error(`package.json: engines.node must read ">=MAJOR", not "${engines.node}"`);
if (Number(process.versions.node.split('.')[0]) < Number(required[1])) {
  process.stderr.write(
    `kvs2: needs Node.js ${required[1]} or later, this is ${process.version}. ` +
      'Run it through npm (`npm start`, `npx kvs2`), which uses the Node that `npm install` put in node_modules.\n',
  );
  process.exit(1);
}

// A node's malloc setting, which glibc reads only when a process starts: so `kvs2 serve` starts again at once,
// in the same process (execve keeps the pid, the open files and the arguments), with it in its environment.
// Without it, glibc's main arena keeps the memory a burst of reads freed (Node's 8 KiB Buffer slabs, among
// long-lived allocations that pin the heap's top): tens of MiB resident for good on an idle node. From 8 KiB
// up, an allocation is mapped on its own and unmapped when freed. An operator's own MALLOC_MMAP_THRESHOLD_ wins.
// docs/operations.md, "Memory"; what it saves and costs: docs/benchmarks.md, "Issue 16: a node's memory".
if (process.argv[2] === 'serve' && process.env.MALLOC_MMAP_THRESHOLD_ === undefined && onGlibc()) {
  process.execve(process.execPath, [process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
    ...process.env,
    MALLOC_MMAP_THRESHOLD_: '8192',
  });
}

function onGlibc() {
  if (process.platform !== 'linux' || typeof process.execve !== 'function') return false;
  process.report.excludeNetwork = true;
  return typeof process.report.getReport().header.glibcVersionRuntime === 'string';
}

// Caches compiled code on disk (Node's own cache, in the OS temp folder), so restarts start faster.
module.enableCompileCache?.();

const main = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write('kvs2: not built yet; run `npm install` (or `npm run build`) in the kvs2 folder first\n');
  process.exit(1);
}
await import(main.href);
