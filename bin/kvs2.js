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

// Caches compiled code on disk (Node's own cache, in the OS temp folder), so restarts start faster.
module.enableCompileCache?.();

const main = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write('kvs2: not built yet; run `npm install` (or `npm run build`) in the kvs2 folder first\n');
  process.exit(1);
}
await import(main.href);
