// Part of `npm install` (the prepare script). npm itself runs on the machine's Node; when that one is older
// than package.json's engines, npm has just warned EBADENGINE for kvs2 and for dependencies that need a
// newer Node. Those warnings are harmless: npm scripts and `npx kvs2` run on the Node that the install put in
// node_modules (this script runs on it), so we say so after them instead of leaving them looking like a failure.
import { readFileSync } from 'node:fs';

const { engines } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const required = Number(/^>=\s*(\d+)$/.exec(engines.node)?.[1]);
const npmNode = /\bnode\/(v(\d+)\S*)/.exec(process.env.npm_config_user_agent ?? '');
if (npmNode !== null && Number(npmNode[2]) < required) {
  process.stdout.write(
    `kvs2: npm runs on Node ${npmNode[1]}, older than the ${required} that kvs2 needs, hence the EBADENGINE ` +
      `warnings above. They do no harm: npm scripts and \`npx kvs2\` run on the Node ${process.version} ` +
      'that this install put in node_modules.\n',
  );
}
