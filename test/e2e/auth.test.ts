import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Kvs2Client, type Kvs2ClientError } from '../../src/client/index.js';
import { runKvs2 } from '../support/cli-process.js';
import { metricsPortOf } from '../support/metrics-port.js';
import { tempDir } from '../support/paths.js';
import { httpGet, parsePrometheusText, sampleValue } from '../support/prometheus-text.js';
import { ServerProcess } from '../support/server-process.js';
import { needsOpenssl, testCa } from '../support/tls-certificates.js';

const TOKENS = { admin: 'admin-secret-1', reader: 'reader-secret-2', writer: 'writer-secret-3' } as const;

/** The hash of a token, made as an operator makes it: `kvs2 auth hash-token` with the token on stdin. */
async function hashOf(token: string): Promise<string> {
  const result = await runKvs2(['auth', 'hash-token'], { input: `${token}\n` });
  assert.deepEqual([result.code, result.stderr], [0, '']);
  const hash = result.stdout.toString().trim();
  assert.match(hash, /^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
  assert.ok(!hash.includes(token), 'the hash does not contain the token');
  return hash;
}

interface GrantJson {
  prefix: string;
  read?: boolean;
  write?: boolean;
  watch?: boolean;
}

/** A rejection with this kvs2 code (and a message matching `details`, when given). */
function failsWith(code: string, details?: RegExp) {
  return (error: unknown): boolean => {
    const e = error as Kvs2ClientError;
    assert.equal(e.kvs2Code, code, e.message);
    if (details !== undefined) assert.match(e.details, details);
    return true;
  };
}

const key = (text: string): Buffer => Buffer.from(text);

describe('--auth-file: bearer tokens and permissions on key prefixes, against a real node', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let server: ServerProcess;
  let authFile: string;
  let hashes: Record<keyof typeof TOKENS, string>;
  const clients: Kvs2Client[] = [];
  const client = (token?: string): Kvs2Client => {
    const c = new Kvs2Client(server.address, token === undefined ? {} : { token });
    clients.push(c);
    return c;
  };
  const writePolicy = (permissions: Record<string, GrantJson[]>): Promise<void> =>
    writeFile(authFile, JSON.stringify({ tokens: hashes, permissions }, null, 2));
  const basePermissions: Record<string, GrantJson[]> = {
    admin: [{ prefix: '', read: true, write: true, watch: true }],
    reader: [{ prefix: 'a/', read: true, watch: true }],
    writer: [{ prefix: 'w/', read: true, write: true }],
  };

  before(async () => {
    dir = await tempDir('auth');
    authFile = join(dir.path, 'auth.json');
    hashes = {
      admin: await hashOf(TOKENS.admin),
      reader: await hashOf(TOKENS.reader),
      writer: await hashOf(TOKENS.writer),
    };
    await writePolicy(basePermissions);
    server = await ServerProcess.start({
      dataDir: join(dir.path, 'data'),
      args: ['--metrics-listen', '127.0.0.1:0'],
      env: { KVS2_AUTH_FILE: authFile },
    });
    await server.waitUntilCaughtUp();
    const admin = client(TOKENS.admin);
    await admin.set({ key: key('a/x'), value: key('in a'), waitForApply: true });
    await admin.set({ key: key('b/x'), value: key('in b'), waitForApply: true });
  });
  after(async () => {
    for (const c of clients) c.close();
    assert.equal((await server.stop()).code, 0);
    await dir.remove();
  });

  test('no token, and a wrong token, are UNAUTHENTICATED; the refusals are logged and counted', async () => {
    await assert.rejects(client().get({ key: key('a/x') }), failsWith('UNAUTHENTICATED'));
    await assert.rejects(client('not-a-token').get({ key: key('a/x') }), failsWith('UNAUTHENTICATED'));
    const logged = await server.waitForLine(
      (line) => line.level === 'warn' && line.reason === 'bad_token' && line.method === 'Get',
    );
    assert.match(String(logged.peer), /127\.0\.0\.1/);
    const scrape = parsePrometheusText((await httpGet(await metricsPortOf(server), '/metrics')).body);
    assert.ok((sampleValue(scrape, 'kvs2_auth_failures_total', { reason: 'no_token' }) ?? 0) >= 1);
    assert.ok((sampleValue(scrape, 'kvs2_auth_failures_total', { reason: 'bad_token' }) ?? 0) >= 1);
  });

  test('a reader gets its prefix, not another (PERMISSION_DENIED naming it), and cannot Set', async () => {
    const reader = client(TOKENS.reader);
    assert.equal((await reader.get({ key: key('a/x') })).data.toString(), 'in a');
    await assert.rejects(reader.get({ key: key('b/x') }), failsWith('PERMISSION_DENIED', /"b\/x"/));
    await assert.rejects(reader.multiGet({ keys: [key('a/x'), key('b/x')] }), failsWith('PERMISSION_DENIED', /"b\/x"/));
    await assert.rejects(
      reader.set({ key: key('a/x'), value: key('changed') }),
      failsWith('PERMISSION_DENIED', /may not write key "a\/x"/),
    );
    assert.equal((await client(TOKENS.admin).get({ key: key('a/x') })).data.toString(), 'in a');
    await assert.rejects(reader.status(), failsWith('PERMISSION_DENIED'));
    assert.ok((await client(TOKENS.admin).status()).version.length > 0);
  });

  test('a Write with one denied mutation writes nothing', async () => {
    const writer = client(TOKENS.writer);
    await assert.rejects(
      writer.write({
        mutations: [
          { key: key('w/1'), value: key('one'), delete: false },
          { key: key('b/1'), value: key('one'), delete: false },
        ],
        waitForApply: true,
      }),
      failsWith('PERMISSION_DENIED', /"b\/1"/),
    );
    const admin = client(TOKENS.admin);
    // An allowed write after it, applied: had the denied one written w/1, it would be visible by now.
    await writer.write({ mutations: [{ key: key('w/2'), value: key('two'), delete: false }], waitForApply: true });
    const read = await admin.multiGet({ keys: [key('w/1'), key('b/1'), key('w/2')], consistency: 2 });
    assert.deepEqual(
      read.parts.map((part) => part.data.toString()),
      ['', '', 'two'],
    );
    assert.deepEqual(
      read.parts.map((part) => part.status),
      [1, 1, 0],
    );
  });

  test('Scan and Watch outside the prefix are denied; within it they work', async () => {
    const reader = client(TOKENS.reader);
    assert.deepEqual(
      (await reader.scan({ prefix: key('a/') })).items.map((i) => i.key.toString()),
      ['a/x'],
    );
    // The range [a/, a0) is exactly the prefix a/.
    assert.equal((await reader.scan({ start: key('a/'), end: key('a0') })).items.length, 1);
    await assert.rejects(reader.scan({ prefix: key('b/') }), failsWith('PERMISSION_DENIED', /"b\/"/));
    await assert.rejects(reader.scan({ start: key('a/'), end: key('c') }), failsWith('PERMISSION_DENIED', /range/));
    await assert.rejects(reader.scan({}), failsWith('PERMISSION_DENIED'));

    const denied = reader.watch({ prefix: key('b/') });
    const [error] = (await once(denied, 'error')) as [Kvs2ClientError];
    assert.equal(error.code, 7 /* PERMISSION_DENIED */);
    assert.match(error.details, /may not watch prefix "b\/"/);

    const allowed = reader.watch({ prefix: key('a/') });
    await once(allowed, 'metadata');
    await client(TOKENS.admin).set({ key: key('a/w'), value: key('seen') });
    const [event] = (await once(allowed, 'data')) as [{ key: Buffer; value: Buffer }];
    assert.deepEqual([event.key.toString(), event.value.toString()], ['a/w', 'seen']);
    allowed.cancel();
    allowed.on('error', () => {});
  });

  test('the CLI sends --token / KVS2_CLIENT_TOKEN', async () => {
    const endpoint = ['--endpoint', server.address];
    const without = await runKvs2(['get', 'a/x', ...endpoint]);
    assert.equal(without.code, 4);
    assert.match(without.stderr, /UNAUTHENTICATED/);
    const viaEnv = await runKvs2(['get', 'a/x', ...endpoint], { env: { KVS2_CLIENT_TOKEN: TOKENS.reader } });
    assert.deepEqual([viaEnv.code, viaEnv.stdout.toString()], [0, 'in a\n']);
    const viaFlag = await runKvs2(['get', 'b/x', ...endpoint, '--token', TOKENS.reader]);
    assert.equal(viaFlag.code, 4);
    assert.match(viaFlag.stderr, /PERMISSION_DENIED/);
  });

  test('SIGHUP reloads the file; a bad file keeps the permissions in force', async () => {
    const reader = client(TOKENS.reader);
    await assert.rejects(reader.get({ key: key('b/x') }), failsWith('PERMISSION_DENIED'));
    await writePolicy({ ...basePermissions, reader: [{ prefix: 'b/', read: true }] });
    const reloads = server.lines.filter((l) => l.msg === 'auth file reloaded').length;
    server.child.kill('SIGHUP');
    await server.waitForLine(() => server.lines.filter((l) => l.msg === 'auth file reloaded').length > reloads);
    assert.equal((await reader.get({ key: key('b/x') })).data.toString(), 'in b');
    await assert.rejects(reader.get({ key: key('a/x') }), failsWith('PERMISSION_DENIED'));

    await writeFile(authFile, '{"tokens": {"reader": "plain-text"}}');
    server.child.kill('SIGHUP');
    const warned = await server.waitForLine((l) => l.msg.startsWith('auth file NOT reloaded'));
    assert.match(warned.msg, /tokens\.reader/);
    assert.equal((await reader.get({ key: key('b/x') })).data.toString(), 'in b');
    await writePolicy(basePermissions);
  });

  test('after a reload, an open watch the new file no longer allows ends PERMISSION_DENIED; one still allowed goes on', {
    timeout: 30_000,
  }, async () => {
    await writePolicy(basePermissions);
    const reload = async (): Promise<void> => {
      const reloads = server.lines.filter((l) => l.msg === 'auth file reloaded').length;
      server.child.kill('SIGHUP');
      await server.waitForLine(() => server.lines.filter((l) => l.msg === 'auth file reloaded').length > reloads);
    };
    await reload();
    const readerWatch = client(TOKENS.reader).watch({ prefix: key('a/') });
    const adminWatch = client(TOKENS.admin).watch({ prefix: key('a/') });
    await Promise.all([once(readerWatch, 'metadata'), once(adminWatch, 'metadata')]);
    const readerEnded = once(readerWatch, 'error') as Promise<[Kvs2ClientError]>;

    // The reader keeps read on a/ but loses watch.
    await writePolicy({ ...basePermissions, reader: [{ prefix: 'a/', read: true }] });
    await reload();
    const [error] = await readerEnded;
    assert.equal(error.code, 7 /* PERMISSION_DENIED */);
    assert.match(error.details, /may not watch prefix "a\/"/);

    await client(TOKENS.admin).set({ key: key('a/after-reload'), value: key('still watched') });
    for (;;) {
      const [event] = (await once(adminWatch, 'data')) as [{ key: Buffer; value: Buffer }];
      if (event.key.toString() !== 'a/after-reload') continue;
      assert.equal(event.value.toString(), 'still watched');
      break;
    }
    adminWatch.cancel();
    adminWatch.on('error', () => {});
    await writePolicy(basePermissions);
    await reload();
  });
});

describe('--auth-file under mutual TLS: the client certificate is an identity', {
  ...needsOpenssl(),
}, () => {
  test("a call without a token is its certificate's CN; a token wins over the certificate", async () => {
    const dir = await tempDir('auth-mtls');
    const ca = testCa(dir.path, 'ca');
    const leaf = ca.leaf('kvs2.test');
    const authFile = join(dir.path, 'auth.json');
    await writeFile(
      authFile,
      JSON.stringify({
        tokens: { admin: await hashOf(TOKENS.admin) },
        permissions: {
          'client.test': [{ prefix: 'c/', read: true, write: true }],
          admin: [{ prefix: '', read: true, write: true, watch: true }],
        },
      }),
    );
    const server = await ServerProcess.start({
      dataDir: join(dir.path, 'data'),
      args: ['--tls-cert', leaf.cert, '--tls-key', leaf.key, '--tls-client-ca', ca.cert, '--auth-file', authFile],
    });
    const tls = { ca: ca.cert, serverName: 'kvs2.test', ...ca.leaf('client.test') };
    const byCertificate = new Kvs2Client(server.address, { tls });
    const byToken = new Kvs2Client(server.address, { tls, token: TOKENS.admin });
    const stranger = new Kvs2Client(server.address, { tls: { ...tls, ...ca.leaf('stranger.test') } });
    try {
      await byCertificate.set({ key: key('c/1'), value: key('mine'), waitForApply: true });
      assert.equal((await byCertificate.get({ key: key('c/1') })).data.toString(), 'mine');
      await assert.rejects(
        byCertificate.get({ key: key('d/1') }),
        failsWith('PERMISSION_DENIED', /"client\.test" may not read key "d\/1"/),
      );
      await byToken.set({ key: key('d/1'), value: key('admin'), waitForApply: true });
      assert.equal((await byToken.get({ key: key('d/1') })).data.toString(), 'admin');
      await assert.rejects(stranger.get({ key: key('c/1') }), failsWith('PERMISSION_DENIED', /"stranger\.test"/));
    } finally {
      for (const c of [byCertificate, byToken, stranger]) c.close();
      assert.equal((await server.stop()).code, 0);
      await dir.remove();
    }
  });
});

describe('--auth-file at start-up', () => {
  test('without it every call is allowed, as before', async () => {
    const dir = await tempDir('auth-open');
    const server = await ServerProcess.start({ dataDir: dir.path });
    const open = new Kvs2Client(server.address);
    try {
      await open.set({ key: key('b/x'), value: key('open'), waitForApply: true });
      assert.equal((await open.get({ key: key('b/x') })).data.toString(), 'open');
    } finally {
      open.close();
      assert.equal((await server.stop()).code, 0);
      await dir.remove();
    }
  });

  test('a bad or missing file is a usage error (exit 2) naming the problem', async () => {
    const dir = await tempDir('auth-bad');
    try {
      const cases: Array<[string, string, RegExp]> = [
        ['missing.json', '', /cannot read/],
        ['not-json.json', 'tokens: {}', /not JSON/],
        ['plain.json', '{"tokens": {"alice": "secret"}}', /tokens\.alice: expected 'scrypt/],
        ['grant.json', '{"permissions": {"alice": [{"prefix": "a/", "reed": true}]}}', /unknown field "reed"/],
      ];
      for (const [name, text, problem] of cases) {
        const file = join(dir.path, name);
        if (text !== '') await writeFile(file, text);
        const result = await runKvs2([
          'serve',
          '--listen',
          '127.0.0.1:0',
          '--data-dir',
          join(dir.path, 'data'),
          '--auth-file',
          file,
        ]);
        assert.equal(result.code, 2, `${name}: ${result.stderr}`);
        assert.match(result.stderr, /^kvs2: invalid --auth-file: /);
        assert.match(result.stderr, problem);
      }
    } finally {
      await dir.remove();
    }
  });
});
