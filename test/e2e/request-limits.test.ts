import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type ServiceError, status } from '@grpc/grpc-js';
import { Consistency, Kvs2Client } from '../../src/client/kvs2-client.js';
import type { WatchRequest } from '../../src/gen/kvs2.js';
import { encodeToken } from '../../src/service/consistency-token.js';
import { tempDir } from '../support/paths.js';
import { ServerProcess } from '../support/server-process.js';

/**
 * Every request limit, for every byte field and repeated field of every request (issue 11, defects 2
 * and 3): at the limit the request is served, one above and far above it is refused with
 * INVALID_ARGUMENT naming the field (and kvs2-error-code in the trailers), and a request bigger than
 * --max-request-bytes is refused with RESOURCE_EXHAUSTED naming the cap.
 */

const MAX_KEY = 64;
const MAX_VALUE = 1024;
const MAX_BATCH = 50;
/** LMDB's key limit, which a Scan continuation (an echoed stored key) may reach. */
const MAX_CONTINUATION = 1978;
const MAX_AFTER_TOKENS = 1000;
const MAX_TOKEN_BYTES = 1024 * 1024;
/** Far above a byte limit, yet far below any request cap. */
const FAR = 100_000;

const STATUS_NAME = Object.fromEntries(Object.entries(status).map(([name, code]) => [code, name]));
const filled = (length: number, fill = 'k'): Buffer => Buffer.alloc(length, fill);
const keyOf = (length: number, tag: string): Buffer =>
  length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from(tag), filled(length)]).subarray(0, length);

function isServiceError(error: unknown): error is ServiceError {
  return error instanceof Error && typeof (error as Partial<ServiceError>).code === 'number';
}

const describeError = (error: unknown): string =>
  isServiceError(error)
    ? `${STATUS_NAME[error.code] ?? error.code} '${error.details}' (kvs2-error-code ${JSON.stringify(error.metadata?.get('kvs2-error-code'))})`
    : String(error);

/** The call must succeed; if it fails, the assertion says with what. */
async function served(call: Promise<unknown>, what: string): Promise<void> {
  try {
    await call;
  } catch (error) {
    assert.fail(`${what}: expected to be served, got ${describeError(error)}`);
  }
}

/** The call must fail with `code` and a message naming `field`; returns the error for further checks. */
async function refusal(
  call: Promise<unknown>,
  code: status,
  field: string | RegExp,
  what: string,
): Promise<ServiceError> {
  let failure: unknown;
  try {
    await call;
  } catch (error) {
    failure = error;
  }
  assert.ok(failure !== undefined, `${what}: expected ${STATUS_NAME[code]}, but it was served`);
  assert.ok(isServiceError(failure), `${what}: not a gRPC error: ${String(failure)}`);
  assert.equal(failure.code, code, `${what}: expected ${STATUS_NAME[code]}, got ${describeError(failure)}`);
  const names = typeof field === 'string' ? failure.details.includes(field) : field.test(failure.details);
  assert.ok(names, `${what}: the message must name ${field}: ${describeError(failure)}`);
  return failure;
}

/** kvs2's own refusals carry their code in the trailing metadata, so clients need not parse messages. */
function assertKvs2Code(error: ServiceError, what: string): void {
  assert.deepEqual(
    error.metadata.get('kvs2-error-code'),
    ['INVALID_ARGUMENT'],
    `${what}: trailing metadata kvs2-error-code missing or wrong: ${describeError(error)}`,
  );
}

/** A refusal as `refusal` checks it, plus kvs2-error-code for kvs2's own INVALID_ARGUMENT. */
async function refused(call: Promise<unknown>, code: status, field: string | RegExp, what: string): Promise<void> {
  const error = await refusal(call, code, field, what);
  if (code === status.INVALID_ARGUMENT) assertKvs2Code(error, what);
}

/** Opens a watch and settles once the server has accepted it (its first event) or refused it. */
function watchAccepted(client: Kvs2Client, request: Partial<WatchRequest>): Promise<void> {
  const stream = client.watch({ progressIntervalMs: 100, ...request });
  return new Promise<void>((resolve, reject) => {
    stream.once('data', () => {
      stream.removeAllListeners('error');
      stream.on('error', () => {});
      stream.cancel();
      resolve();
    });
    stream.once('error', reject);
  });
}

/** A byte field of one request: the request it makes with the field at a given length. */
interface SizedField {
  readonly rpc: string;
  readonly field: string;
  readonly limit: number;
  /** The smallest length the field accepts (1 for keys). */
  readonly min?: number;
  readonly far?: number;
  readonly send: (length: number) => Promise<unknown>;
}

/**
 * At the limit: served. One above and far above: INVALID_ARGUMENT naming the field. Below the minimum too.
 * The requests are built when the tests run, once the server is up.
 */
function boundaryTests(fields: readonly SizedField[]): void {
  for (const { rpc, field, limit, min, far, send } of fields) {
    test(`${rpc} ${field}: ${limit} is served`, () => served(send(limit), `${rpc} ${field} of ${limit}`));
    test(`${rpc} ${field}: ${limit + 1} is INVALID_ARGUMENT naming ${field}`, () =>
      refused(send(limit + 1), status.INVALID_ARGUMENT, field, `${rpc} ${field} of ${limit + 1}`));
    const farLength = far ?? Math.max(FAR, limit * 100);
    test(`${rpc} ${field}: ${farLength} is INVALID_ARGUMENT naming ${field}`, () =>
      refused(send(farLength), status.INVALID_ARGUMENT, field, `${rpc} ${field} of ${farLength}`));
    if (min !== undefined && min > 0) {
      test(`${rpc} ${field}: ${min - 1} is INVALID_ARGUMENT naming ${field}`, () =>
        refused(send(min - 1), status.INVALID_ARGUMENT, field, `${rpc} ${field} of ${min - 1}`));
    }
  }
}

describe('per-field request limits (--max-key-bytes 64 --max-value-bytes 1024 --max-batch-keys 50)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let server: ServerProcess;
  let client: Kvs2Client;
  /** A real token: the Set that wrote `present`. */
  let token: Buffer;

  before(async () => {
    dir = await tempDir('limits');
    server = await ServerProcess.start({
      dataDir: dir.path,
      args: ['--max-key-bytes', `${MAX_KEY}`, '--max-value-bytes', `${MAX_VALUE}`, '--max-batch-keys', `${MAX_BATCH}`],
    });
    await server.waitUntilCaughtUp();
    client = new Kvs2Client(server.address, { timeoutMs: 20_000 });
    token = (await client.set({ key: Buffer.from('present'), value: Buffer.from('v'), waitForApply: true })).token;
  });
  after(async () => {
    client.close();
    assert.equal((await server.stop()).code, 0);
    await dir.remove();
  });

  const mutations = (count: number, build: (i: number) => { key: Buffer; value: Buffer; delete?: boolean }) =>
    Array.from({ length: count }, (_, i) => ({ delete: false, ...build(i) }));
  const tokens = (count: number): Buffer[] => Array.from({ length: count }, () => token);

  const read = (rpc: 'Get' | 'MultiGet' | 'Scan', after: Buffer[], consistency = Consistency.CONSISTENCY_AT_LEAST) => {
    if (rpc === 'Get') return client.get({ key: Buffer.from('present'), consistency, after });
    if (rpc === 'MultiGet') return client.multiGet({ keys: [Buffer.from('present')], consistency, after });
    return client.scan({ prefix: Buffer.from('present'), consistency, after });
  };

  const sizedFields: SizedField[] = [
    { rpc: 'Get', field: 'key', limit: MAX_KEY, min: 1, send: (n) => client.get({ key: keyOf(n, 'get/') }) },
    {
      rpc: 'MultiGet',
      field: 'keys[2]',
      limit: MAX_KEY,
      min: 1,
      send: (n) => client.multiGet({ keys: [Buffer.from('a'), Buffer.from('b'), keyOf(n, 'mg/')] }),
    },
    {
      rpc: 'MultiGet',
      field: 'keys',
      limit: MAX_BATCH,
      far: 5000,
      send: (n) => client.multiGet({ keys: Array.from({ length: n }, (_, i) => Buffer.from(`mg/${i}`)) }),
    },
    {
      rpc: 'Set',
      field: 'key',
      limit: MAX_KEY,
      min: 1,
      send: (n) => client.set({ key: keyOf(n, 'set/'), value: filled(1) }),
    },
    {
      rpc: 'Set',
      field: 'value',
      limit: MAX_VALUE,
      send: (n) => client.set({ key: Buffer.from('set/v'), value: filled(n, 'v') }),
    },
    { rpc: 'Delete', field: 'key', limit: MAX_KEY, min: 1, send: (n) => client.delete({ key: keyOf(n, 'del/') }) },
    {
      rpc: 'Write',
      field: 'mutations',
      limit: MAX_BATCH,
      far: 5000,
      send: (n) =>
        client.write({ mutations: mutations(n, (i) => ({ key: Buffer.from(`wr/${i}`), value: filled(1) })) }),
    },
    {
      rpc: 'Write',
      field: 'mutations[3].key',
      limit: MAX_KEY,
      min: 1,
      send: (n) =>
        client.write({
          mutations: mutations(5, (i) => ({
            key: i === 3 ? keyOf(n, 'wr/k/') : Buffer.from(`wr/k${i}`),
            value: filled(1),
          })),
        }),
    },
    {
      rpc: 'Write',
      field: 'mutations[3].value',
      limit: MAX_VALUE,
      send: (n) =>
        client.write({
          mutations: mutations(5, (i) => ({ key: Buffer.from(`wr/v${i}`), value: filled(i === 3 ? n : 1, 'v') })),
        }),
    },
    { rpc: 'Scan', field: 'prefix', limit: MAX_KEY, send: (n) => client.scan({ prefix: keyOf(n, 'p/') }) },
    { rpc: 'Scan', field: 'start', limit: MAX_KEY, send: (n) => client.scan({ start: keyOf(n, 's/') }) },
    { rpc: 'Scan', field: 'end', limit: MAX_KEY, send: (n) => client.scan({ end: keyOf(n, 'z/') }) },
    {
      rpc: 'Scan',
      field: 'continuation',
      limit: MAX_CONTINUATION,
      send: (n) => client.scan({ continuation: keyOf(n, 'c/') }),
    },
    { rpc: 'Scan', field: 'limit', limit: MAX_BATCH, far: 2 ** 32 - 1, send: (n) => client.scan({ limit: n }) },
    { rpc: 'Watch', field: 'key', limit: MAX_KEY, send: (n) => watchAccepted(client, { key: keyOf(n, 'wk/') }) },
    { rpc: 'Watch', field: 'prefix', limit: MAX_KEY, send: (n) => watchAccepted(client, { prefix: keyOf(n, 'wp/') }) },
    ...(['Get', 'MultiGet', 'Scan'] as const).map(
      (rpc): SizedField => ({
        rpc,
        field: 'after',
        limit: MAX_AFTER_TOKENS,
        far: 10_000,
        send: (n) => read(rpc, tokens(n)),
      }),
    ),
  ];
  boundaryTests(sizedFields);

  describe('the cases of issue 11', () => {
    test('Scan end of 1,979 bytes is INVALID_ARGUMENT, not UNAVAILABLE', () =>
      refused(client.scan({ end: keyOf(1979, 'z/') }), status.INVALID_ARGUMENT, 'end', 'Scan end of 1979 bytes'));
    test('Scan start of 4,096 bytes is INVALID_ARGUMENT, not UNAVAILABLE', () =>
      refused(client.scan({ start: keyOf(4096, 's/') }), status.INVALID_ARGUMENT, 'start', 'Scan start of 4096 bytes'));
    test('Scan continuation of 4,096 bytes is INVALID_ARGUMENT, not UNAVAILABLE', () =>
      refused(
        client.scan({ continuation: keyOf(4096, 'c/') }),
        status.INVALID_ARGUMENT,
        'continuation',
        'Scan continuation of 4096 bytes',
      ));
  });

  describe('tokens in after: at most 1 MiB each', () => {
    // Any 1 MiB token is malformed (real ones are a few bytes); at the limit it must be refused for what it
    // says, not for its size, and above it for its size, before the server reads it.
    const sizeRefusal = /1048576|1 ?MiB/;
    const paddedToken = (length: number): Buffer => Buffer.concat([token, Buffer.alloc(length - token.length)]);

    for (const rpc of ['Get', 'MultiGet', 'Scan'] as const) {
      test(`${rpc} after token of 1 MiB is not refused for its size`, async () => {
        const error = await refusal(read(rpc, [paddedToken(MAX_TOKEN_BYTES)]), status.INVALID_ARGUMENT, 'after', rpc);
        assert.doesNotMatch(error.details, sizeRefusal, `${rpc}: refused for its size at the limit`);
        assertKvs2Code(error, 'after');
      });
      test(`${rpc} after token of 1 MiB + 1 is INVALID_ARGUMENT for its size, naming after`, async () => {
        const error = await refusal(
          read(rpc, [paddedToken(MAX_TOKEN_BYTES + 1)]),
          status.INVALID_ARGUMENT,
          'after',
          rpc,
        );
        assert.match(error.details, sizeRefusal, `${rpc}: the message must give the 1 MiB limit`);
        assertKvs2Code(error, 'after');
      });
      test(`${rpc} after token of 2 MiB is INVALID_ARGUMENT naming after`, async () => {
        const error = await refusal(
          read(rpc, [paddedToken(2 * MAX_TOKEN_BYTES)]),
          status.INVALID_ARGUMENT,
          'after',
          rpc,
        );
        assert.match(error.details, sizeRefusal, `${rpc}: the message must give the 1 MiB limit`);
        assertKvs2Code(error, 'after');
      });
    }

    test('Watch after of 1 MiB is not refused for its size', async () => {
      const error = await refusal(
        watchAccepted(client, { after: paddedToken(MAX_TOKEN_BYTES) }),
        status.INVALID_ARGUMENT,
        'after',
        'Watch',
      );
      assert.doesNotMatch(error.details, sizeRefusal, 'Watch: refused for its size at the limit');
      assertKvs2Code(error, 'after');
    });
    test('Watch after of 1 MiB + 1 is INVALID_ARGUMENT for its size, naming after', async () => {
      const error = await refusal(
        watchAccepted(client, { after: paddedToken(MAX_TOKEN_BYTES + 1) }),
        status.INVALID_ARGUMENT,
        'after',
        'Watch',
      );
      assert.match(error.details, sizeRefusal, 'Watch: the message must give the 1 MiB limit');
      assertKvs2Code(error, 'after');
    });
    test('Watch after of 2 MiB is INVALID_ARGUMENT naming after', async () => {
      const error = await refusal(
        watchAccepted(client, { after: paddedToken(2 * MAX_TOKEN_BYTES) }),
        status.INVALID_ARGUMENT,
        'after',
        'Watch',
      );
      assert.match(error.details, sizeRefusal, 'Watch: the message must give the 1 MiB limit');
      assertKvs2Code(error, 'after');
    });
  });

  describe('other request rules', () => {
    test('Write: a delete with a non-empty value is INVALID_ARGUMENT naming the mutation, and nothing is written', async () => {
      const kept = Buffer.from('rule/kept');
      await refused(
        client.write({
          mutations: [
            { key: kept, value: Buffer.from('x'), delete: false },
            { key: Buffer.from('rule/del'), value: Buffer.from('not empty'), delete: true },
          ],
        }),
        status.INVALID_ARGUMENT,
        'mutations[1]',
        'Write delete with a value',
      );
      const read = await client.get({ key: kept, consistency: Consistency.CONSISTENCY_LATEST });
      assert.equal(read.data.length, 0, 'the valid mutation of a refused Write was written');
    });

    for (const rpc of ['Get', 'MultiGet', 'Scan'] as const) {
      test(`${rpc}: an unknown consistency is INVALID_ARGUMENT naming consistency`, () =>
        refused(read(rpc, [], 7 as Consistency), status.INVALID_ARGUMENT, 'consistency', `${rpc} consistency 7`));
    }

    test('Watch with both key and prefix is INVALID_ARGUMENT', () =>
      refused(
        watchAccepted(client, { key: Buffer.from('a'), prefix: Buffer.from('b') }),
        status.INVALID_ARGUMENT,
        /key|prefix/,
        'Watch key and prefix',
      ));

    test('a kvs2 refusal carries its code in the trailing metadata kvs2-error-code (a too-long key)', async () => {
      const error = await refusal(client.get({ key: filled(MAX_KEY + 1) }), status.INVALID_ARGUMENT, 'key', 'Get');
      assertKvs2Code(error, 'Get of a too-long key');
    });

    test('a token of another log is FAILED_PRECONDITION with kvs2-error-code TOKEN_FROM_OTHER_LOG', async () => {
      const foreign = encodeToken(Buffer.alloc(8, 0xee), new Map([[0, 1]]));
      const error = await refusal(read('Get', [foreign]), status.FAILED_PRECONDITION, 'after', 'Get');
      assert.deepEqual(error.metadata.get('kvs2-error-code'), ['TOKEN_FROM_OTHER_LOG'], describeError(error));
    });

    test('the server is still serving after every refusal', async () => {
      assert.equal(server.child.exitCode, null);
      assert.equal((await client.get({ key: Buffer.from('present') })).data.toString(), 'v');
    });
  });
});

describe('the request cap (--max-request-bytes 262144, --max-value-bytes 65536)', () => {
  const CAP = 262_144;
  const VALUE = 65_536;
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let server: ServerProcess;
  let client: Kvs2Client;

  before(async () => {
    dir = await tempDir('request-cap');
    server = await ServerProcess.start({
      dataDir: dir.path,
      args: [
        '--max-key-bytes',
        `${MAX_KEY}`,
        '--max-value-bytes',
        `${VALUE}`,
        '--max-batch-keys',
        `${MAX_BATCH}`,
        '--max-request-bytes',
        `${CAP}`,
      ],
    });
    await server.waitUntilCaughtUp();
    client = new Kvs2Client(server.address, { timeoutMs: 20_000 });
  });
  after(async () => {
    client.close();
    assert.equal((await server.stop()).code, 0);
    await dir.remove();
  });

  const values = (count: number) =>
    Array.from({ length: count }, (_, i) => ({
      key: Buffer.from(`cap/${i}`),
      value: filled(VALUE, 'v'),
      delete: false,
    }));
  /** The refusal names the cap (grpc-js's own message gives the number) or the setting. */
  const overCap = (call: Promise<unknown>, what: string) =>
    refused(call, status.RESOURCE_EXHAUSTED, new RegExp(`${CAP}|max-request-bytes`), what);
  const OVER = CAP + 1024;

  test('a Write of 3 max-size values (under the cap, within every per-item limit) is served', () =>
    served(client.write({ mutations: values(3), waitForApply: true }), 'Write of 3 x 64 KiB'));
  test('a Write of 5 max-size values (over the cap) is RESOURCE_EXHAUSTED naming the cap', () =>
    overCap(client.write({ mutations: values(5) }), 'Write of 5 x 64 KiB'));
  test('a field over its limit in a request under the cap is INVALID_ARGUMENT', () =>
    refused(
      client.set({ key: Buffer.from('cap/v'), value: filled(200_000) }),
      status.INVALID_ARGUMENT,
      'value',
      'Set',
    ));

  test('Get over the cap is RESOURCE_EXHAUSTED', () => overCap(client.get({ key: filled(OVER) }), 'Get'));
  test('MultiGet over the cap is RESOURCE_EXHAUSTED', () =>
    overCap(client.multiGet({ keys: [filled(OVER)] }), 'MultiGet'));
  test('Set over the cap is RESOURCE_EXHAUSTED', () =>
    overCap(client.set({ key: Buffer.from('k'), value: filled(OVER) }), 'Set'));
  test('Delete over the cap is RESOURCE_EXHAUSTED', () => overCap(client.delete({ key: filled(OVER) }), 'Delete'));
  test('Scan over the cap is RESOURCE_EXHAUSTED', () => overCap(client.scan({ start: filled(OVER) }), 'Scan'));
  test('Watch over the cap is RESOURCE_EXHAUSTED', () =>
    overCap(watchAccepted(client, { prefix: filled(OVER) }), 'Watch'));
  test('a valid request afterwards is served', async () => {
    const reply = await client.get({ key: Buffer.from('cap/0'), consistency: Consistency.CONSISTENCY_LATEST });
    assert.equal(reply.data.length, VALUE);
  });
});

describe('the default limits of issue 11 (no limit flags)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let server: ServerProcess;
  let client: Kvs2Client;

  before(async () => {
    dir = await tempDir('default-limits');
    server = await ServerProcess.start({ dataDir: dir.path });
    await server.waitUntilCaughtUp();
    client = new Kvs2Client(server.address, { timeoutMs: 60_000 });
  });
  after(async () => {
    client.close();
    assert.equal((await server.stop()).code, 0);
    await dir.remove();
  });

  test('a Write of 10 mutations of 1 MiB values (inside every documented limit) is served', () =>
    served(
      client.write({
        mutations: Array.from({ length: 10 }, (_, i) => ({
          key: Buffer.from(`big/${i}`),
          value: filled(1024 * 1024, 'v'),
          delete: false,
        })),
      }),
      'Write of 10 x 1 MiB',
    ));

  test('a Write of 10,000 mutations with 1,024-byte keys and 16-byte values (inside every documented limit) is served', () =>
    served(
      client.write({
        mutations: Array.from({ length: 10_000 }, (_, i) => ({
          key: keyOf(1024, `many/${String(i).padStart(5, '0')}/`),
          value: filled(16, 'v'),
          delete: false,
        })),
      }),
      'Write of 10,000 x (1 KiB key, 16-byte value)',
    ));
});
