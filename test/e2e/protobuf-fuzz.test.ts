import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import fc from 'fast-check';
import { Consistency, Kvs2Client, ReadStatus } from '../../src/client/kvs2-client.js';
import { GetReply, MultiGetReply, WriteReply } from '../../src/gen/kvs2.js';
import { applyEdits, type Edit, edits } from '../support/hostile-encodings.js';
import { encodeFields, type MessageValue, REQUEST_SCHEMA, type Rpc } from '../support/kvs2-request-schema.js';
import { tempDir } from '../support/paths.js';
import {
  bytesOf,
  type DecodedMessage,
  judge,
  listOf,
  type Verdict,
  varintOf,
} from '../support/protobuf-strict-decoder.js';
import { bytesField, END_GROUP_BYTE, tag, varint, varintField, WireType } from '../support/protobuf-wire.js';
import { type RawGrpcClient as Raw, RawGrpcClient, type RawReply } from '../support/raw-grpc-client.js';
import { ServerProcess } from '../support/server-process.js';

/**
 * Issue 11: a request body that is not a valid protobuf encoding of its message must be refused with
 * INVALID_ARGUMENT and nothing written, for every RPC, whatever the damage; the server must answer every
 * body with a real status within the deadline, and keep serving afterwards.
 */

const b = (text: string): Buffer => Buffer.from(text);
const hex = (bytes: Buffer): string => bytes.toString('hex');
const STATUS_NAME = Object.fromEntries(Object.entries(status).map(([name, code]) => [code, name]));
const describeReply = (reply: RawReply): string =>
  `${STATUS_NAME[reply.grpcStatus] ?? reply.grpcStatus} '${reply.grpcMessage}' (${reply.frames.length} reply frames)`;

/** Statuses a valid body may get: answered, refused on its content, or out of time waiting for a token. */
const VALID_BODY_STATUSES = new Set([
  status.OK,
  status.INVALID_ARGUMENT,
  status.DEADLINE_EXCEEDED,
  status.FAILED_PRECONDITION,
  status.OUT_OF_RANGE,
  status.RESOURCE_EXHAUSTED,
]);

/** Every key and value the store holds, read after everything acknowledged (CONSISTENCY_LATEST). */
async function storeContents(client: Kvs2Client): Promise<Map<string, string>> {
  const contents = new Map<string, string>();
  let continuation: Buffer = Buffer.alloc(0);
  do {
    const page = await client.scan({ continuation, consistency: Consistency.CONSISTENCY_LATEST });
    for (const item of page.items) contents.set(hex(item.key), hex(item.value));
    continuation = page.continuation;
  } while (continuation.length > 0);
  return contents;
}

describe('malformed request bodies of issue 11, by name', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let server: ServerProcess;
  let client: Kvs2Client;
  let raw: Raw;

  before(async () => {
    dir = await tempDir('fuzz-cases');
    server = await ServerProcess.start({ dataDir: dir.path });
    await server.waitUntilCaughtUp();
    client = new Kvs2Client(server.address);
    raw = await RawGrpcClient.connect(server.address);
  });
  after(async () => {
    await raw.close();
    client.close();
    assert.equal((await server.stop()).code, 0);
    await dir.remove();
  });

  const assertRefused = (reply: RawReply, what: string): void => {
    assert.equal(
      reply.grpcStatus,
      status.INVALID_ARGUMENT,
      `${what}: expected INVALID_ARGUMENT, got ${describeReply(reply)}`,
    );
    assert.equal(
      reply.metadata['kvs2-error-code'],
      'INVALID_ARGUMENT',
      `${what}: trailing metadata ${JSON.stringify(reply.metadata)}`,
    );
  };
  const assertAbsent = async (key: Buffer): Promise<void> => {
    const read = await client.get({ key, consistency: Consistency.CONSISTENCY_LATEST });
    assert.equal(
      read.status,
      ReadStatus.NOT_FOUND,
      `${key} must not exist, but holds '${read.data.toString()}' (${read.data.length} bytes)`,
    );
  };

  test('Set with a stray END_GROUP between key and value is INVALID_ARGUMENT and stores nothing', async () => {
    const key = b('issue11/set-end-group');
    const body = Buffer.concat([bytesField(1, key), Buffer.of(END_GROUP_BYTE), bytesField(2, 'value')]);
    assert.equal(hex(body).slice(-16), '0c120576616c7565');
    assertRefused(await raw.call('Set', body), 'Set 0a..key 0c 12 05 value');
    await assertAbsent(key);
  });

  test('Write of two mutations with END_GROUP between them is INVALID_ARGUMENT and writes neither', async () => {
    const first = b('issue11/write-first');
    const second = b('issue11/write-second');
    const body = Buffer.concat([
      bytesField(1, Buffer.concat([bytesField(1, first), bytesField(2, 'one')])),
      Buffer.of(END_GROUP_BYTE),
      bytesField(1, Buffer.concat([bytesField(1, second), bytesField(2, 'two')])),
      varintField(2, 1),
    ]);
    assertRefused(await raw.call('Write', body), 'Write mutation 0c mutation');
    await assertAbsent(first);
    await assertAbsent(second);
  });

  test('MultiGet with END_GROUP between two keys is INVALID_ARGUMENT', async () => {
    await client.write({
      mutations: [
        { key: b('issue11/mg-a'), value: b('a'), delete: false },
        { key: b('issue11/mg-b'), value: b('b'), delete: false },
      ],
      waitForApply: true,
    });
    const body = Buffer.concat([
      bytesField(1, 'issue11/mg-a'),
      Buffer.of(END_GROUP_BYTE),
      bytesField(1, 'issue11/mg-b'),
    ]);
    const reply = await raw.call('MultiGet', body);
    const parts = reply.frames[0] ? MultiGetReply.decode(reply.frames[0]).parts.length : 0;
    assert.equal(reply.grpcStatus, status.INVALID_ARGUMENT, `got ${describeReply(reply)} with ${parts} parts`);
  });

  test('Get with END_GROUP after the key is INVALID_ARGUMENT', async () => {
    await client.set({ key: b('issue11/get'), value: b('v'), waitForApply: true });
    const reply = await raw.call('Get', Buffer.concat([bytesField(1, 'issue11/get'), Buffer.of(END_GROUP_BYTE)]));
    assertRefused(reply, 'Get key 0c');
  });

  test('Delete with END_GROUP after the key is INVALID_ARGUMENT and deletes nothing', async () => {
    const key = b('issue11/delete');
    await client.set({ key, value: b('kept'), waitForApply: true });
    const body = Buffer.concat([bytesField(1, key), Buffer.of(END_GROUP_BYTE), varintField(2, 1)]);
    assertRefused(await raw.call('Delete', body), 'Delete key 0c wait_for_apply');
    const read = await client.get({ key, consistency: Consistency.CONSISTENCY_LATEST });
    assert.deepEqual([read.status, read.data.toString()], [ReadStatus.OK, 'kept']);
  });

  // A lenient decoder reads each of these as an empty request, i.e. a Scan or Watch of every key.
  const emptyLooking: ReadonlyArray<{ name: string; scan: Buffer; watch: Buffer }> = [
    {
      name: 'field number 0',
      scan: Buffer.concat([tag(0, WireType.VARINT), varint(0), bytesField(1, 'issue11/none/')]),
      watch: Buffer.concat([tag(0, WireType.VARINT), varint(0), bytesField(2, 'issue11/none/')]),
    },
    {
      name: 'field number 2^29',
      scan: Buffer.concat([tag(1n << 29n, WireType.LEN), varint(0), bytesField(1, 'issue11/none/')]),
      watch: Buffer.concat([tag(1n << 29n, WireType.LEN), varint(0), bytesField(2, 'issue11/none/')]),
    },
    {
      name: 'field number 2^29 + 1 (field 1 when truncated to 32 bits)',
      scan: Buffer.concat([tag((1n << 29n) + 1n, WireType.LEN), varint(0)]),
      watch: Buffer.concat([tag((1n << 29n) + 2n, WireType.LEN), varint(0)]),
    },
    {
      name: 'an 11-byte varint',
      scan: Buffer.concat([tag(4, WireType.VARINT), varint(10, 11), bytesField(1, 'issue11/none/')]),
      watch: Buffer.concat([tag(4, WireType.VARINT), varint(100, 11), bytesField(2, 'issue11/none/')]),
    },
  ];
  for (const { name, scan, watch } of emptyLooking) {
    test(`Scan with ${name} is INVALID_ARGUMENT`, async () => {
      await client.set({ key: b('issue11/scan-visible'), value: b('v'), waitForApply: true });
      assert.equal(judge(REQUEST_SCHEMA.Scan, scan).kind, 'invalid');
      assertRefused(await raw.call('Scan', scan), `Scan ${hex(scan)}`);
    });
    test(`Watch with ${name} is INVALID_ARGUMENT`, async () => {
      assert.equal(judge(REQUEST_SCHEMA.Watch, watch).kind, 'invalid');
      assertRefused(await raw.call('Watch', watch, { deadlineMs: 3000 }), `Watch ${hex(watch)}`);
    });
  }

  test('a valid body sent raw is answered, so the refusals above are about the encoding', async () => {
    await client.set({ key: b('issue11/raw-ok'), value: b('yes'), waitForApply: true });
    const reply = await raw.call('Get', bytesField(1, 'issue11/raw-ok'));
    assert.equal(reply.grpcStatus, status.OK, describeReply(reply));
    assert.equal(GetReply.decode(reply.frames[0] ?? Buffer.alloc(0)).data.toString(), 'yes');
  });
});

/** The fuzz's context: what the seeded keys are, and a token that names their writes. */
interface Seeds {
  readonly keys: readonly Buffer[];
  readonly token: Buffer;
}

const SEED_PREFIX = b('seed/');
/** Valid generated writes only ever write keys under this prefix, never under SEED_PREFIX. */
const WRITE_PREFIX = b('w/');

const bytes = (min: number, max: number): fc.Arbitrary<Buffer> =>
  fc.uint8Array({ minLength: min, maxLength: max }).map((a) => Buffer.from(a));
const consistency = fc.constantFrom(0, 0, 1, 2, 3);

function requestArbitrary(rpc: Rpc, seeds: Seeds): fc.Arbitrary<MessageValue> {
  const writeKey = bytes(1, 8).map((suffix) => Buffer.concat([WRITE_PREFIX, suffix]));
  const readKey = fc.oneof(fc.constantFrom(...seeds.keys), writeKey, bytes(0, 6));
  const tokens = fc.constantFrom([], [], [seeds.token]);
  switch (rpc) {
    case 'Get':
      return fc.record({ key: readKey, consistency, after: tokens });
    case 'MultiGet':
      return fc.record({ keys: fc.array(readKey, { maxLength: 5 }), consistency, after: tokens });
    case 'Set':
      return fc.record({ key: writeKey, value: bytes(0, 24), wait_for_apply: fc.boolean() });
    case 'Delete':
      return fc.record({ key: writeKey, wait_for_apply: fc.boolean() });
    case 'Write':
      return fc.record({
        mutations: fc.array(
          fc.oneof(
            fc.record({ key: writeKey, value: bytes(0, 16) }),
            fc.record({ key: writeKey, delete: fc.constant(true) }),
          ),
          { minLength: 1, maxLength: 4 },
        ),
        wait_for_apply: fc.boolean(),
      });
    case 'Scan':
      return fc.oneof(
        fc.record({
          prefix: fc.constantFrom(SEED_PREFIX, WRITE_PREFIX, b('seed/1')),
          limit: fc.nat(60),
          keys_only: fc.boolean(),
          consistency,
          after: tokens,
        }),
        fc.record({
          start: fc.oneof(fc.constantFrom(...seeds.keys), bytes(0, 4)),
          end: fc.oneof(fc.constant(Buffer.alloc(0)), bytes(1, 4)),
          limit: fc.nat(60),
          continuation: fc.oneof(fc.constant(Buffer.alloc(0)), fc.constantFrom(...seeds.keys)),
          consistency,
          after: tokens,
        }),
      );
    case 'Status':
      return fc.constant({});
    case 'Snapshot':
      // 0: unpaced; under 64 KiB/s is refused (a read transaction held for hours); above, paced.
      return fc.record({ max_bytes_per_second: fc.constantFrom(0, 0, 1000, 65_536, 1 << 20) });
    case 'Watch':
      return fc.oneof(
        fc.record({ key: readKey, after: fc.constantFrom(Buffer.alloc(0), seeds.token) }),
        fc.record({
          prefix: fc.constantFrom(SEED_PREFIX, WRITE_PREFIX, Buffer.alloc(0)),
          progress_interval_ms: fc.nat(500),
        }),
      );
  }
}

/** One fuzz case: a valid request, the damage done to its encoding, and the body that results. */
interface Case {
  readonly rpc: Rpc;
  readonly body: Buffer;
  readonly verdict: Verdict;
  readonly edits: readonly Edit[];
}

function makeCase(rpc: Rpc, request: MessageValue, damage: readonly Edit[]): Case {
  const body = applyEdits(encodeFields(REQUEST_SCHEMA[rpc], request), damage);
  return { rpc, body, verdict: judge(REQUEST_SCHEMA[rpc], body), edits: damage };
}

/** The property every answer must have; returns the reply for the caller's further checks. */
async function send(raw: Raw, c: Case, deadlineMs: number): Promise<RawReply> {
  const label = `${c.rpc} body ${hex(c.body)} (${c.verdict.kind === 'valid' ? 'valid' : c.verdict.why}; edits ${JSON.stringify(c.edits)})`;
  const reply = await raw.call(c.rpc, c.body, { deadlineMs });
  if (c.verdict.kind === 'invalid') {
    assert.equal(
      reply.grpcStatus,
      status.INVALID_ARGUMENT,
      `${label}: expected INVALID_ARGUMENT, got ${describeReply(reply)}`,
    );
  } else {
    assert.ok(VALID_BODY_STATUSES.has(reply.grpcStatus), `${label}: unexpected ${describeReply(reply)}`);
  }
  if (reply.grpcStatus !== status.OK) assert.notEqual(reply.grpcMessage, '', `${label}: an error without a message`);
  else if (c.rpc !== 'Watch' && c.rpc !== 'Snapshot') {
    assert.equal(reply.frames.length, 1, `${label}: ${reply.frames.length} reply frames`);
  }
  return reply;
}

const FUZZ_SEED = 0x6b767332;
const RPCS: readonly Rpc[] = ['Get', 'MultiGet', 'Set', 'Delete', 'Write', 'Scan', 'Watch', 'Status', 'Snapshot'];

describe('fuzzed request bodies of every RPC (seeded)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let server: ServerProcess;
  let client: Kvs2Client;
  let raw: Raw;
  let seeds: Seeds;
  /** What the store must hold: the seeds plus whatever valid bodies wrote, by key (hex) and value (hex). */
  const expected = new Map<string, string>();

  before(async () => {
    dir = await tempDir('fuzz');
    server = await ServerProcess.start({ dataDir: dir.path });
    await server.waitUntilCaughtUp();
    client = new Kvs2Client(server.address);
    raw = await RawGrpcClient.connect(server.address);
    const keys = Array.from({ length: 20 }, (_, i) => b(`seed/${String(i).padStart(2, '0')}`));
    const reply = await client.write({
      mutations: keys.map((key) => ({ key, value: b(`value of ${key}`), delete: false })),
      waitForApply: true,
    });
    for (const key of keys) expected.set(hex(key), hex(b(`value of ${key}`)));
    seeds = { keys, token: reply.token };
  });
  after(async () => {
    await raw.close();
    client.close();
    assert.equal((await server.stop()).code, 0);
    await dir.remove();
  });

  /** A valid request on the same connection still works, and the server process is still there. */
  const stillServing = async (): Promise<void> => {
    assert.equal(server.child.exitCode, null, 'the server process exited');
    assert.ok(raw.open, 'the server closed the fuzzing connection');
    const key = seeds.keys[0] as Buffer;
    const reply = await raw.call('Get', bytesField(1, key));
    assert.equal(reply.grpcStatus, status.OK, `a valid Get afterwards: ${describeReply(reply)}`);
    const value = GetReply.decode(reply.frames[0] ?? Buffer.alloc(0));
    assert.equal(hex(value.data), expected.get(hex(key)) ?? '', 'the valid Get read a changed seed');
  };

  /** Applies what an acknowledged valid write body did to `expected`. */
  const record = (c: Case, reply: RawReply): void => {
    if (c.verdict.kind !== 'valid' || reply.grpcStatus !== status.OK) return;
    const message = c.verdict.message;
    const apply = (m: DecodedMessage, deleted: boolean): void => {
      if (deleted) expected.delete(hex(bytesOf(m, 'key')));
      else expected.set(hex(bytesOf(m, 'key')), hex(bytesOf(m, 'value')));
    };
    if (c.rpc === 'Set') apply(message, false);
    if (c.rpc === 'Delete') apply(message, true);
    if (c.rpc === 'Write') {
      const results = WriteReply.decode(reply.frames[0] ?? Buffer.alloc(0)).results;
      listOf(message, 'mutations').forEach((mutation, i) => {
        const m = mutation as DecodedMessage;
        if (results[i]?.code === status.OK) apply(m, varintOf(m, 'delete') !== 0n);
      });
    }
  };

  // Writes run one at a time, so that the expected contents follow the log's order; reads and watches in
  // small concurrent batches, since a valid watch (and a read waiting for a damaged token) lasts until
  // its deadline. That deadline is short only for valid bodies: an invalid one must be refused long
  // before it, so a busy machine cannot turn the refusal into DEADLINE_EXCEEDED.
  for (const [index, rpc] of RPCS.entries()) {
    const writes = rpc === 'Set' || rpc === 'Delete' || rpc === 'Write';
    test(`${rpc}: every body gets a real status, invalid ones INVALID_ARGUMENT, and nothing invalid is written`, async () => {
      const schema = REQUEST_SCHEMA[rpc];
      const settings = { seed: FUZZ_SEED + index, numRuns: writes ? 300 : 60, endOnFailure: true };
      if (writes) {
        await fc.assert(
          fc.asyncProperty(requestArbitrary(rpc, seeds), edits(schema), async (request, damage) => {
            const c = makeCase(rpc, request, damage);
            fc.pre(c.verdict.kind !== 'unspecified');
            record(c, await send(raw, c, 5000));
            const contents = await storeContents(client);
            assert.deepEqual(
              contents,
              expected,
              `after ${rpc} body ${hex(c.body)} (${c.verdict.kind}): the store is not what valid bodies wrote`,
            );
            await stillServing();
          }),
          settings,
        );
      } else {
        const batch = fc.array(fc.tuple(requestArbitrary(rpc, seeds), edits(schema)), { minLength: 1, maxLength: 6 });
        await fc.assert(
          fc.asyncProperty(batch, async (pairs) => {
            const cases = pairs.map(([request, damage]) => makeCase(rpc, request, damage));
            await Promise.all(
              cases
                .filter((c) => c.verdict.kind !== 'unspecified')
                .map((c) => send(raw, c, c.verdict.kind === 'invalid' ? 5000 : rpc === 'Watch' ? 150 : 400)),
            );
            await stillServing();
          }),
          settings,
        );
      }
    });
  }

  test('afterwards the store holds exactly the seeds and what valid bodies wrote', async () => {
    assert.deepEqual(await storeContents(client), expected);
  });
});
