import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AuthFileError, allows, covers, type Grant, parsePolicy, type Target } from '../../src/auth/policy.js';
import { hashToken, parseTokenHash, tokenMatches } from '../../src/auth/token-hash.js';

const grant = (prefix: string | Buffer, access: Partial<Pick<Grant, 'read' | 'write' | 'watch'>> = {}): Grant => ({
  prefix: Buffer.from(prefix),
  read: access.read ?? true,
  write: access.write ?? false,
  watch: access.watch ?? false,
});
const range = (start: string | Buffer, end?: string | Buffer): Target => ({
  kind: 'range',
  start: Buffer.from(start),
  end: end === undefined ? undefined : Buffer.from(end),
});

describe('what a grant on a prefix covers', () => {
  test('keys and prefixes that start with it, and nothing else', () => {
    const a = grant('a/');
    assert.equal(covers(a, { kind: 'key', key: Buffer.from('a/x') }), true);
    assert.equal(covers(a, { kind: 'key', key: Buffer.from('a/') }), true);
    assert.equal(covers(a, { kind: 'key', key: Buffer.from('a') }), false);
    assert.equal(covers(a, { kind: 'key', key: Buffer.from('b/x') }), false);
    assert.equal(covers(a, { kind: 'prefix', prefix: Buffer.from('a/b/') }), true);
    assert.equal(covers(a, { kind: 'prefix', prefix: Buffer.from('a') }), false);
    assert.equal(covers(a, { kind: 'prefix', prefix: Buffer.alloc(0) }), false);
  });

  test('a range only when it lies wholly within the prefix', () => {
    const a = grant('a/');
    assert.equal(covers(a, range('a/', 'a0')), true, "[a/, a0) is exactly the prefix ('/' + 1 is '0')");
    assert.equal(covers(a, range('a/m', 'a/n')), true);
    assert.equal(covers(a, range('a/', 'a1')), false, 'ends past the prefix');
    assert.equal(covers(a, range('a/')), false, 'no upper bound');
    assert.equal(covers(a, range('a', 'a/z')), false, 'starts before the prefix');
    const ff = grant(Buffer.from([0x61, 0xff]));
    assert.equal(covers(ff, range(Buffer.from([0x61, 0xff, 0x01]), Buffer.from([0x62]))), true);
    assert.equal(covers(ff, range(Buffer.from([0x61, 0xff]), Buffer.from([0x62, 0x00]))), false);
  });

  test('the empty prefix covers everything, an unbounded range included', () => {
    const all = grant('');
    assert.equal(covers(all, range('')), true);
    assert.equal(covers(all, { kind: 'prefix', prefix: Buffer.alloc(0) }), true);
  });

  test('default deny: an identity without grants, or without that access, may not', () => {
    const policy = parsePolicy({ permissions: { reader: [{ prefix: 'a/', read: true }] } }, 'test');
    const key: Target = { kind: 'key', key: Buffer.from('a/x') };
    assert.equal(allows(policy, 'reader', 'read', key), true);
    assert.equal(allows(policy, 'reader', 'write', key), false);
    assert.equal(allows(policy, 'reader', 'watch', key), false);
    assert.equal(allows(policy, 'someone', 'read', key), false);
  });
});

describe('the auth file', () => {
  test('refuses what it does not understand, naming where', () => {
    const cases: Array<[unknown, RegExp]> = [
      [[], /expected an object/],
      [{ users: {} }, /unknown field "users"/],
      [{ tokens: { alice: 'secret' } }, /tokens\.alice: expected 'scrypt/],
      [
        { tokens: { alice: 'scrypt$3$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==' } },
        /tokens\.alice: N must be a power of two/,
      ],
      [{ permissions: { alice: { prefix: 'a/' } } }, /permissions\.alice: expected a list/],
      [{ permissions: { alice: [{ read: true }] } }, /permissions\.alice\[0\]\.prefix/],
      [
        { permissions: { alice: [{ prefix: 'a/', read: 'yes' }] } },
        /permissions\.alice\[0\]\.read: expected true or false/,
      ],
    ];
    for (const [json, problem] of cases) {
      assert.throws(
        () => parsePolicy(json, 'auth.json'),
        (error: unknown) => error instanceof AuthFileError && problem.test(error.message),
        String(problem),
      );
    }
  });
});

describe('token hashes', () => {
  test('a hash verifies its token and no other, and never contains it', async () => {
    const encoded = await hashToken('correct horse');
    assert.ok(!encoded.includes('correct horse'));
    const parsed = parseTokenHash(encoded);
    assert.ok(typeof parsed !== 'string', String(parsed));
    assert.equal(await tokenMatches('correct horse', parsed), true);
    assert.equal(await tokenMatches('correct horsf', parsed), false);
    assert.notEqual(await hashToken('correct horse'), encoded, 'a fresh salt each time');
  });
});
