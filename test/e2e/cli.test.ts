import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { decodeToken } from '../../src/service/consistency-token.js';
import { type CliOptions, CliProcess, type CliResult, runKvs2 } from '../support/cli-process.js';
import { tempDir } from '../support/paths.js';
import { ServerProcess } from '../support/server-process.js';

const TOKEN = /^[A-Za-z0-9+/]+={0,2}$/;

/** A failure's stderr: exactly one line, `kvs2 <command>: ...`. */
function oneLine(result: CliResult, command: string): string {
  const lines = result.stderr.split('\n');
  assert.equal(lines.length, 2, `one line and its newline on stderr, got: ${JSON.stringify(result.stderr)}`);
  assert.equal(lines[1], '');
  assert.ok(lines[0]?.startsWith(`kvs2 ${command}: `), lines[0]);
  return lines[0] as string;
}

function ok(result: CliResult): string {
  assert.deepEqual([result.code, result.stderr], [0, ''], `stdout: ${result.stdout.toString()}`);
  return result.stdout.toString();
}

/** The version a write gives its key: the log position (offset + 1) its printed token names. */
const versionOf = (token: string): number =>
  [...decodeToken(Buffer.from(token, 'base64')).offsets.values()][0] as number;

const jsonLines = (text: string): unknown[] =>
  text
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as unknown);

describe('the kvs2 CLI against a real node', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let server: ServerProcess;
  /** kvs2 with KVS2_ENDPOINT naming the node, as a user who exported it. */
  let kvs2: (args: readonly string[], options?: CliOptions) => Promise<CliResult>;

  before(async () => {
    dir = await tempDir('cli');
    server = await ServerProcess.start({ dataDir: dir.path });
    await server.waitUntilCaughtUp();
    kvs2 = (args, options = {}) =>
      runKvs2(args, { ...options, env: { KVS2_ENDPOINT: server.address, ...options.env } });
  });
  after(async () => {
    assert.equal((await server.stop()).code, 0);
    await dir.remove();
  });

  test('put prints a token; get --after it prints the value; --output json gives key, value and token', async () => {
    const token = ok(await kvs2(['put', 'greeting', 'héllo wörld'])).trim();
    assert.match(token, TOKEN);
    assert.equal(ok(await kvs2(['get', 'greeting', '--after', token])), 'héllo wörld\n');
    const json = JSON.parse(ok(await kvs2(['get', 'greeting', '--after', token, '--output', 'json'])));
    assert.equal(json.key, 'greeting');
    assert.equal(json.value, 'héllo wörld');
    assert.equal(json.version, versionOf(token));
    assert.match(json.token, TOKEN);
    // put --output json carries the same kind of token.
    const put = JSON.parse(ok(await kvs2(['put', 'greeting', 'again', '-o', 'json'])));
    assert.match(put.token, TOKEN);
    assert.equal(ok(await kvs2(['get', 'greeting', '--consistency', 'latest'])), 'again\n');
  });

  test('--endpoint wins over KVS2_ENDPOINT', async () => {
    const token = ok(
      await kvs2(['put', 'via-flag', 'v', '--endpoint', server.address], { env: { KVS2_ENDPOINT: '127.0.0.1:1' } }),
    );
    assert.match(token.trim(), TOKEN);
  });

  test('a key that is not there: get exits 1 with one line on stderr and nothing on stdout', async () => {
    const result = await kvs2(['get', 'no-such-key', '--consistency', 'latest']);
    assert.equal(result.code, 1);
    assert.equal(result.stdout.length, 0);
    assert.match(oneLine(result, 'get'), /not found: no-such-key/);
  });

  test('--hex and --base64 carry binary keys and values both ways', async () => {
    const token = ok(await kvs2(['put', '--hex', '00ff', 'deadbeef00'])).trim();
    assert.equal(ok(await kvs2(['get', '--hex', '00ff', '--after', token])), 'deadbeef00\n');
    assert.equal(ok(await kvs2(['get', '--base64', 'AP8=', '--after', token])), '3q2+7wA=\n');
    const json = JSON.parse(ok(await kvs2(['get', '--base64', 'AP8=', '--after', token, '-o', 'json'])));
    assert.deepEqual([json.key, json.value], ['AP8=', '3q2+7wA=']);
    // Read as text (the default), the value comes out as the raw bytes it is, and the key is UTF-8 ("hi").
    const hi = ok(await kvs2(['put', '--hex', '6869', 'deadbeef00'])).trim();
    const raw = await kvs2(['get', 'hi', '--after', hi]);
    assert.deepEqual([raw.code, raw.stdout], [0, Buffer.from('deadbeef000a', 'hex')]);
  });

  test('a value from stdin with -: bytes as they come, newlines and zero bytes included', async () => {
    const value = Buffer.from([0x6c, 0x69, 0x6e, 0x65, 0x0a, 0x00, 0xff, 0x0a]);
    const token = ok(await kvs2(['put', 'from-stdin', '-'], { input: value })).trim();
    const encoded = ok(await kvs2(['get', '--base64', Buffer.from('from-stdin').toString('base64'), '--after', token]));
    assert.equal(encoded, `${value.toString('base64')}\n`);
    // Raw text output is the value's bytes followed by one newline.
    const raw = await kvs2(['get', 'from-stdin', '--after', token]);
    assert.deepEqual(raw.stdout, Buffer.concat([value, Buffer.from('\n')]));
    // With --hex, stdin is hex text (surrounding whitespace ignored).
    const hexToken = ok(await kvs2(['put', '--hex', '6b', '-'], { input: '  0102ff\n' })).trim();
    assert.equal(ok(await kvs2(['get', '--hex', '6b', '--after', hexToken])), '0102ff\n');
  });

  test('del prints a token after which the key is gone', async () => {
    const put = ok(await kvs2(['put', 'doomed', 'x'])).trim();
    const deleted = ok(await kvs2(['del', 'doomed'])).trim();
    assert.match(deleted, TOKEN);
    assert.equal((await kvs2(['get', 'doomed', '--after', put, '--after', deleted])).code, 1);
    assert.match(JSON.parse(ok(await kvs2(['del', 'doomed', '-o', 'json']))).token, TOKEN);
  });

  test('mget: key<TAB>value per key found, in order; json marks the ones not found', async () => {
    const a = ok(await kvs2(['put', 'm/a', '1'])).trim();
    const b = ok(await kvs2(['put', 'm/b', '2'])).trim();
    const text = ok(await kvs2(['mget', 'm/b', 'm/missing', 'm/a', '--after', a, '--after', b]));
    assert.equal(text, 'm/b\t2\nm/a\t1\n');
    const json = jsonLines(
      ok(await kvs2(['mget', 'm/b', 'm/missing', 'm/a', '--after', a, '--after', b, '-o', 'json'])),
    );
    assert.deepEqual(json, [
      { key: 'm/b', found: true, value: '2', version: versionOf(b) },
      { key: 'm/missing', found: false, version: 0 },
      { key: 'm/a', found: true, value: '1', version: versionOf(a) },
    ]);
  });

  test('scan: by prefix, by range, keys only, limited; json lines', async () => {
    let token = '';
    const versions: Record<string, number> = {};
    for (const key of ['s/1', 's/2', 's/3', 's/4', 't/1']) {
      token = ok(await kvs2(['put', key, `v${key}`, '--wait'])).trim();
      versions[key] = versionOf(token);
    }
    assert.equal(ok(await kvs2(['scan', 's/', '--after', token])), 's/1\tvs/1\ns/2\tvs/2\ns/3\tvs/3\ns/4\tvs/4\n');
    assert.equal(ok(await kvs2(['scan', '--start', 's/2', '--end', 's/4', '--keys-only'])), 's/2\ns/3\n');
    assert.equal(ok(await kvs2(['scan', 's/', '--limit', '3', '--keys-only'])), 's/1\ns/2\ns/3\n');
    assert.deepEqual(jsonLines(ok(await kvs2(['scan', 's/', '--limit', '2', '-o', 'json']))), [
      { key: 's/1', value: 'vs/1', version: versions['s/1'] },
      { key: 's/2', value: 'vs/2', version: versions['s/2'] },
    ]);
    assert.deepEqual(jsonLines(ok(await kvs2(['scan', 's/', '--limit', '1', '--keys-only', '-o', 'json']))), [
      { key: 's/1', version: versions['s/1'] },
    ]);
    assert.deepEqual(jsonLines(ok(await kvs2(['scan', '--hex', '732f33', '-o', 'json']))), [
      { key: '732f33', value: Buffer.from('vs/3').toString('hex'), version: versions['s/3'] },
    ]);
  });

  test('watch prints the changes another command makes, then ends cleanly on SIGINT (exit 0)', async () => {
    const start = ok(await kvs2(['put', 'w/0', 'before the watch'])).trim();
    // From the token on: the write above is not shown, every later one is, whenever the watch subscribes.
    const watch = new CliProcess(['watch', '--prefix', 'w/', '--after', start, '-o', 'json'], {
      env: { KVS2_ENDPOINT: server.address },
    });
    const put = ok(await kvs2(['put', 'w/1', 'one'])).trim();
    const del = ok(await kvs2(['del', 'w/1'])).trim();
    ok(await kvs2(['put', 'elsewhere', 'not watched']));
    const seen = await watch.waitForStdout((text) => jsonLines(text).length >= 2);
    watch.child.kill('SIGINT');
    const ended = await watch.result;
    assert.deepEqual([ended.code, ended.signal, ended.stderr], [0, null, '']);
    const events = jsonLines(seen) as Array<Record<string, string | number>>;
    assert.deepEqual(
      events.map(({ kind, key, value, version }) => ({ kind, key, value, version })),
      [
        { kind: 'put', key: 'w/1', value: 'one', version: versionOf(put) },
        { kind: 'delete', key: 'w/1', value: undefined, version: versionOf(del) },
      ],
    );
    for (const event of events) assert.match(event.token as string, TOKEN);
  });

  test('watch in text: PUT and DELETE lines for one key', async () => {
    const start = ok(await kvs2(['put', 'wt', 'first'])).trim();
    const watch = new CliProcess(['watch', 'wt', '--after', start], { env: { KVS2_ENDPOINT: server.address } });
    ok(await kvs2(['put', 'wt-other', 'x']));
    ok(await kvs2(['put', 'wt', 'second']));
    ok(await kvs2(['del', 'wt']));
    await watch.waitForStdout((text) => text.includes('DELETE'));
    watch.child.kill('SIGINT');
    const ended = await watch.result;
    assert.deepEqual([ended.code, ended.stdout.toString()], [0, 'PUT\twt\tsecond\nDELETE\twt\n']);
  });

  test('usage errors exit 2 with one line on stderr', async () => {
    const cases: Array<[string[], string, RegExp]> = [
      [['get'], 'get', /missing required argument 'key'/],
      [['get', '--hex', 'zz'], 'get', /key is not hex/],
      [['get', 'k', '--hex', '--base64'], 'get', /cannot be used with/],
      [['get', 'k', '--consistency', 'eventual'], 'get', /Allowed choices are local, at-least, latest/],
      [['get', 'k', '--consistency', 'at-least'], 'get', /needs --after/],
      [['get', 'k', '--after', 'not a token'], 'get', /not a base64 consistency token/],
      [['get', 'k', '--timeout', 'soon'], 'get', /duration/],
      [['put', 'k'], 'put', /missing required argument 'value'/],
      [['scan', 'p', '--start', 'a'], 'scan', /not both/],
      [['scan', '--limit', '0'], 'scan', /at least 1/],
      [['watch', 'k', '--prefix', 'p'], 'watch', /not both/],
      [['status', '--output', 'yaml'], 'status', /Allowed choices are text, json/],
      [['get', 'k', '--no-such-flag'], 'get', /unknown option/],
    ];
    for (const [args, command, message] of cases) {
      const result = await kvs2(args);
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
      assert.equal(result.stdout.length, 0);
      assert.match(oneLine(result, command), message, args.join(' '));
    }
  });

  test('a request the node refuses exits 4 with its kvs2 code', async () => {
    const result = await kvs2(['put', '', 'empty key']);
    assert.equal(result.code, 4);
    assert.match(oneLine(result, 'put'), /^kvs2 put: INVALID_ARGUMENT: .*empty/);
  });

  test('an unreachable endpoint exits 3 for every command', async () => {
    for (const args of [
      ['get', 'k'],
      ['put', 'k', 'v'],
      ['del', 'k'],
      ['mget', 'k'],
      ['scan'],
      ['watch'],
      ['status'],
    ]) {
      const result = await runKvs2([...args, '--endpoint', '127.0.0.1:1', '--timeout', '5s']);
      assert.equal(result.code, 3, `${args.join(' ')}: ${result.stderr}`);
      assert.match(oneLine(result, args[0] as string), /GRPC_UNAVAILABLE/);
    }
  });

  test('status prints the node state, version, log, lag, keys and store size', async () => {
    ok(await kvs2(['put', 'status/key', 'v', '--wait']));
    const probe = await kvs2(['status', '-o', 'json']);
    const status = JSON.parse(ok(probe));
    assert.equal(status.state, 'serving');
    assert.match(status.version, /^\d+\.\d+\.\d+/);
    assert.equal(status.log.kind, 'embedded');
    assert.ok(status.partitions.length >= 1);
    for (const p of status.partitions) assert.equal(p.lagRecords, 0);
    assert.ok(status.keys >= 1);
    assert.ok(status.storeBytes > 0);
    assert.notEqual(status.lastCaughtUp, null);
    const text = ok(await kvs2(['status']));
    assert.match(text, /^state {11}serving$/m);
    assert.match(text, /^log {13}embedded/m);
    assert.match(text, /^partition {2}applied {2}end/m);
  });

  test('a reader that closes the pipe early (kvs2 status | head -1) ends the command quietly, exit 0', async () => {
    const status = new CliProcess(['status'], { env: { KVS2_ENDPOINT: server.address } });
    // Closed before the command writes anything: every write it makes meets a closed pipe (EPIPE).
    status.child.stdout?.destroy();
    const ended = await status.result;
    assert.deepEqual([ended.code, ended.signal, ended.stderr], [0, null, '']);
  });

  test('kvs2 --help documents the commands and the exit codes', async () => {
    const help = ok(await kvs2(['--help']));
    for (const command of ['serve', 'get', 'put', 'del', 'mget', 'scan', 'watch', 'status']) {
      assert.match(help, new RegExp(`^  ${command}\\b`, 'm'), command);
    }
    assert.match(help, /Exit codes/);
    assert.match(help, /^ {2}3 {2}unavailable/m);
    assert.match(ok(await kvs2(['get', '--help'])), /--consistency <level>/);
  });
});
