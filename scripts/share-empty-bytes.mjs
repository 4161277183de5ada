// Part of `npm run generate` (scripts/generate.sh), run on ts-proto's output. ts-proto gives every bytes
// field a new `Buffer.alloc(0)` as its default, in each message it creates or decodes; a zero-length Buffer
// cannot be written to, yet each gets an ArrayBuffer of its own, so the generated files share one instead
// (measured in docs/benchmarks.md).
import { readFileSync, writeFileSync } from 'node:fs';

const DECLARATION =
  '\n/** The default of every bytes field: zero bytes, shared (see scripts/share-empty-bytes.mjs). */\nconst EMPTY_BYTES: Buffer = Buffer.alloc(0);\n';

for (const file of process.argv.slice(2)) {
  const source = readFileSync(file, 'utf8');
  if (!source.includes('Buffer.alloc(0)')) continue;
  const shared = source.replaceAll('Buffer.alloc(0)', 'EMPTY_BYTES');
  // After the imports: the first blank line that follows the last import statement.
  const lastImport = shared.lastIndexOf('\nimport ');
  const insertAt = shared.indexOf('\n\n', lastImport) + 1;
  writeFileSync(file, `${shared.slice(0, insertAt)}${DECLARATION}${shared.slice(insertAt)}`);
}
