import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { runKvs2 } from '../support/cli-process.js';
import { REPO_ROOT, tempDir } from '../support/paths.js';
import { ServerProcess } from '../support/server-process.js';

const exec = promisify(execFile);
const TSC = join(REPO_ROOT, 'node_modules', '.bin', 'tsc');

/** Runs a command to its end; a failure throws with its output, which says what went wrong. */
async function run(
  file: string,
  args: readonly string[],
  cwd: string,
  env: Readonly<Record<string, string>> = {},
): Promise<string> {
  try {
    const { stdout } = await exec(file, [...args], {
      cwd,
      env: { ...process.env, ...env },
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`${file} ${args.join(' ')} failed:\n${stdout ?? ''}\n${stderr ?? ''}`, { cause: error });
  }
}

/**
 * What a user writes: the client from `kvs2/client` (the package's main entry, `kvs2`, is the same client),
 * typed, and the proto from `kvs2/proto/...`.
 */
const CONSUMER = `import { readFile } from 'node:fs/promises';
import { Consistency, type GetReply, Kvs2Client, Kvs2ClientError, ReadStatus } from 'kvs2/client';
import { Kvs2Client as MainEntryClient } from 'kvs2';

const client = new Kvs2Client({ endpoint: process.env.KVS2_ENDPOINT ?? '', timeoutMs: 10_000 });
const { token } = await client.set({ key: Buffer.from('from-package'), value: Buffer.from('works') });
const read: GetReply = await client.get({
  key: Buffer.from('from-package'),
  consistency: Consistency.CONSISTENCY_AT_LEAST,
  after: [token],
});
let refused = '';
try {
  await client.set({ key: Buffer.alloc(0), value: Buffer.from('x') });
} catch (error) {
  if (error instanceof Kvs2ClientError) refused = error.kvs2Code;
}
client.close();
const proto = await readFile(new URL(import.meta.resolve('kvs2/proto/kvs2.proto')), 'utf8');
console.log(
  JSON.stringify({
    found: read.status === ReadStatus.OK,
    value: read.data.toString(),
    refused,
    protoHasService: proto.includes('service Kvs2'),
    mainEntryIsTheClient: MainEntryClient === Kvs2Client,
  }),
);
`;

/**
 * What a Node application embedding a replica writes: `kvs2/replica`, typed. No broker here (the Kafka
 * tests run it against one): it opens a store in the installed package's LMDB, waits in vain for an
 * unreachable broker, and is refused without Kafka.
 */
const REPLICA_CONSUMER = `import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Kvs2Error,
  type Kvs2ColocatedReader,
  type Kvs2Replica,
  openColocatedReader,
  openReplica,
  type ReplicaOptions,
} from 'kvs2/replica';

const dataDir = await mkdtemp(join(tmpdir(), 'kvs2-replica-consumer-'));
const replica: Kvs2Replica = await openReplica({ kafka: { brokers: ['127.0.0.1:1'], topic: 'kvs2' }, dataDir });
const empty = replica.get(Buffer.from('k')) === undefined && replica.scan({ prefix: Buffer.from('') }).length === 0;
const waited = await replica.whenCaughtUp(AbortSignal.timeout(200)).then(
  () => 'caught up',
  (error: unknown) => (error instanceof Kvs2Error ? error.code : String(error)),
);
const caughtUp = replica.status().caughtUp;
await replica.close();
// The store the replica left, read in place as a node's is.
const reader: Kvs2ColocatedReader = await openColocatedReader({ dataDir });
const colocated = reader.get(Buffer.from('k')) === undefined && reader.status().unavailable === null;
await reader.close();
const withoutKafka = await openReplica({ dataDir } as unknown as ReplicaOptions).then(
  () => 'opened',
  (error: unknown) => (error instanceof Kvs2Error ? error.code : String(error)),
);
console.log(JSON.stringify({ empty, waited, caughtUp, colocated, withoutKafka }));
`;

/**
 * The light entries stay light: importing kvs2 and kvs2/client resolves none of the replica's modules, LMDB
 * or the Kafka client (every module resolution is recorded by a hook registered first).
 */
const LIGHT_ENTRIES = `import { registerHooks } from 'node:module';

const resolved = [];
registerHooks({
  resolve(specifier, context, nextResolve) {
    const result = nextResolve(specifier, context);
    resolved.push(result.url);
    return result;
  },
});
await import('kvs2');
await import('kvs2/client');
console.log(JSON.stringify({
  client: resolved.some((url) => url.includes('/dist/src/client/')),
  heavy: resolved.filter((url) => /lmdb|@platformatic|replica-lib|\\/replica\\/|\\/store\\//.test(url)),
}));
`;

/** What the types must refuse: a misspelt field, and a module the package does not export. */
const MISUSE = `import { Kvs2Client } from 'kvs2/client';
import { KvsNode } from 'kvs2/dist/src/cli/node.js';

const client = new Kvs2Client('127.0.0.1:50051');
await client.get({ kee: Buffer.from('k') });
console.log(KvsNode);
`;

function tsconfig(file: string): string {
  return JSON.stringify({
    compilerOptions: {
      target: 'es2022',
      module: 'nodenext',
      moduleResolution: 'nodenext',
      strict: true,
      types: ['node'],
      outDir: 'out',
    },
    files: [file],
  });
}

interface PackResult {
  filename: string;
  files: Array<{ path: string }>;
}

describe('the kvs2 package, packed and installed into a fresh project', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let server: ServerProcess;
  let packed: PackResult;
  let project: string;

  before(async () => {
    work = await tempDir('package');
    server = await ServerProcess.start({ dataDir: join(work.path, 'data') });
    // The tests run on a fresh build; --ignore-scripts skips `prepare`, which would build again.
    const [result] = JSON.parse(
      await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work.path], REPO_ROOT),
    ) as PackResult[];
    assert.ok(result);
    packed = result;
    project = join(work.path, 'consumer');
    await mkdir(project);
    await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    await writeFile(join(project, 'main.ts'), CONSUMER);
    await writeFile(join(project, 'tsconfig.json'), tsconfig('main.ts'));
    await writeFile(join(project, 'replica.ts'), REPLICA_CONSUMER);
    await writeFile(join(project, 'tsconfig.replica.json'), tsconfig('replica.ts'));
    await writeFile(join(project, 'light-entries.mjs'), LIGHT_ENTRIES);
    await writeFile(join(project, 'misuse.ts'), MISUSE);
    await writeFile(join(project, 'tsconfig.misuse.json'), tsconfig('misuse.ts'));
    const { devDependencies } = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as {
      devDependencies: Record<string, string>;
    };
    // Everything comes from npm's cache when it holds it (it does after this repository's own install).
    await run(
      'npm',
      [
        ...['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel', 'error'],
        join(work.path, packed.filename),
        `@types/node@${devDependencies['@types/node']}`,
      ],
      project,
    );
    await server.waitUntilCaughtUp();
  });
  after(async () => {
    await server?.stop();
    await work?.remove();
  });

  test('the tarball holds the client with its types, the proto, the binary and what it runs; nothing else', () => {
    const paths = packed.files.map((file) => file.path);
    for (const needed of [
      'package.json',
      'README.md',
      'bin/kvs2.js',
      'dist/src/client/index.js',
      'dist/src/client/index.d.ts',
      'dist/src/client/kvs2-client.d.ts',
      'dist/src/replica-lib/index.js',
      'dist/src/replica-lib/index.d.ts',
      'dist/src/gen/kvs2.js',
      'dist/src/gen/kvs2.d.ts',
      'dist/src/cli/main.js',
      'dist/src/cli/node.js',
      'src/gen/descriptor-set.binpb',
      'proto/kvs2.proto',
      'proto/grpc/health/v1/health.proto',
    ]) {
      assert.ok(paths.includes(needed), `${needed} is missing from the tarball`);
    }
    const stray = paths.filter(
      (path) =>
        !/^(package\.json|README\.md|LICENSE|bin\/kvs2\.js|src\/gen\/descriptor-set\.binpb|proto\/.+\.proto)$/.test(
          path,
        ) && !/^dist\/src\/.+\.(js|d\.ts)$/.test(path),
    );
    assert.deepEqual(stray, []);
    // A compiled file whose source is gone (left in dist/ by an earlier build) must not ship: the build
    // starts from an empty dist/ (package.json), and this checks what was packed.
    const orphans = paths
      .filter((path) => /^dist\/src\/.+\.js$/.test(path))
      .map((path) => path.replace(/^dist\//, '').replace(/\.js$/, '.ts'))
      .filter((source) => !existsSync(join(REPO_ROOT, source)));
    assert.deepEqual(orphans, []);
  });

  test('a TypeScript program importing kvs2/client and kvs2 type-checks (module NodeNext) and works against a node', async () => {
    await run(TSC, ['-p', 'tsconfig.json'], project);
    const stdout = await run(process.execPath, ['out/main.js'], project, { KVS2_ENDPOINT: server.address });
    assert.deepEqual(JSON.parse(stdout), {
      found: true,
      value: 'works',
      refused: 'INVALID_ARGUMENT',
      protoHasService: true,
      mainEntryIsTheClient: true,
    });
  });

  test('a TypeScript program importing kvs2/replica type-checks and opens a replica with the installed LMDB', async () => {
    await run(TSC, ['-p', 'tsconfig.replica.json'], project);
    const stdout = await run(process.execPath, ['out/replica.js'], project);
    assert.deepEqual(JSON.parse(stdout), {
      empty: true,
      waited: 'DEADLINE_EXCEEDED',
      caughtUp: false,
      colocated: true,
      withoutKafka: 'INVALID_ARGUMENT',
    });
  });

  test('importing kvs2 and kvs2/client loads neither the replica, LMDB nor the Kafka client', async () => {
    const stdout = await run(process.execPath, ['light-entries.mjs'], project);
    assert.deepEqual(JSON.parse(stdout), { client: true, heavy: [] });
  });

  test('the types refuse a misspelt field and a module the package does not export', async () => {
    const failure = await run(TSC, ['-p', 'tsconfig.misuse.json'], project).then(
      () => assert.fail('misuse.ts type-checked'),
      (error: Error) => error.message,
    );
    assert.match(failure, /misuse\.ts\(5,[0-9]+\).*'kee'/);
    assert.match(failure, /misuse\.ts\(2,[0-9]+\).*kvs2\/dist\/src\/cli\/node\.js/);
  });

  test('the installed kvs2 binary talks to the node', async () => {
    const bin = join(project, 'node_modules', 'kvs2', 'bin', 'kvs2.js');
    const token = await runKvs2(['put', 'installed-cli', 'yes', '--endpoint', server.address], { bin });
    assert.equal(token.code, 0, token.stderr);
    const read = await runKvs2(
      ['get', 'installed-cli', '--after', token.stdout.toString().trim(), '--endpoint', server.address],
      {
        bin,
      },
    );
    assert.deepEqual([read.code, read.stdout.toString()], [0, 'yes\n'], read.stderr);
  });
});
