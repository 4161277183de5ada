#!/usr/bin/env node
// The `kvs2` command. The TypeScript sources are compiled to dist/ by `npm install` (or `npm run build`).
import { existsSync } from 'node:fs';
import module from 'node:module';

// npm scripts and npx run this on the Node 24 that the project pins; a bare `node` may be older.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 22)) {
  process.stderr.write(`kvs2: needs Node.js 22.22 or later (24 LTS recommended), this is ${process.version}\n`);
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
