#!/usr/bin/env node
// The `kvs2` command. The TypeScript sources are compiled to dist/ by `npm install` (or `npm run build`).
import { existsSync, readFileSync } from 'node:fs';
import module from 'node:module';
import { availableParallelism } from 'node:os';

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

// Caches compiled code on disk (Node's own cache, in the OS temp folder), so restarts start faster.
module.enableCompileCache?.();

const main = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write('kvs2: not built yet; run `npm install` (or `npm run build`) in the kvs2 folder first\n');
  process.exit(1);
}
// The settings Node and glibc read only when a process starts (src/cli/runtime-settings.ts says which and
// why): `kvs2 serve` starts again at once with those it lacks, in the same process (execve keeps the pid, the
// open files and the arguments). An operator's own value of each wins.
if (process.argv[2] === 'serve' && typeof process.execve === 'function') {
  const { servingRuntimeChanges } = await import(new URL('../dist/src/cli/runtime-settings.js', import.meta.url).href);
  const changes = servingRuntimeChanges({
    env: process.env,
    execArgv: process.execArgv,
    cores: availableParallelism(),
    glibc: onGlibc(),
  });
  if (changes.nodeFlags.length > 0 || Object.keys(changes.env).length > 0) {
    process.execve(
      process.execPath,
      [process.execPath, ...changes.nodeFlags, ...process.execArgv, ...process.argv.slice(1)],
      { ...process.env, ...changes.env },
    );
  }
}

function onGlibc() {
  if (process.platform !== 'linux') return false;
  process.report.excludeNetwork = true;
  return typeof process.report.getReport().header.glibcVersionRuntime === 'string';
}

await import(main.href);
