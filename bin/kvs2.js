#!/usr/bin/env node
// The `kvs2` command. The TypeScript sources are compiled to dist/ by `npm install` (or `npm run build`).
import { existsSync } from 'node:fs';

const main = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write('kvs2: not built yet; run `npm install` (or `npm run build`) in the kvs2 folder first\n');
  process.exit(1);
}
await import(main.href);
