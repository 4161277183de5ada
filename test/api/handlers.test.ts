import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { type ServiceError, status } from '@grpc/grpc-js';
import { GrpcApi } from '../../src/api/grpc-server.js';
import { HealthService } from '../../src/api/health.js';
import {
  Consistency,
  Kvs2Client,
  Kvs2ClientError,
  type Kvs2ErrorCode,
  ReadStatus,
  SetStatus,
  WatchEvent_Kind,
} from '../../src/client/kvs2-client.js';
import { Kvs2Error } from '../../src/errors.js';
import type { WatchEvent } from '../../src/gen/kvs2.js';
import type { Replica } from '../../src/replica/replica.js';
import { ConditionalWrites } from '../../src/service/conditional-writes.js';
import { decodeToken, encodeToken, logTagOf } from '../../src/service/consistency-token.js';
import { KvService } from '../../src/service/kv-service.js';
import { NodeHealth } from '../../src/service/node-health.js';
import { NodeStatusReport } from '../../src/service/node-status.js';
import { KVS2_VERSION } from '../../src/version.js';
import { FailingKeys } from '../support/failing-keys.js';
import { eventually, HealthClient } from '../support/grpc-clients.js';
import { bytesField, END_GROUP_BYTE, varintField } from '../support/protobuf-wire.js';
import { RawGrpcClient } from '../support/raw-grpc-client.js';
import { b, EMPTY, noDeadline } from '../support/service-calls.js';
import { type ServiceNode, startLiveNode } from '../support/service-node.js';

const MAX_REPLY_BYTES = 64 * 1024;

/** The Kvs2ClientError a call rejects with. */
async function rejection(call: Promise<unknown>): Promise<Kvs2ClientError> {
  try {
    await call;
  } catch (error) {
    assert.ok(error instanceof Kvs2ClientError, `expected a Kvs2ClientError, got ${String(error)}`);
    return error;
  }
  assert.fail('the call succeeded');
}

/** Asserts the gRPC status, the kvs2-error-code trailer and the client's kvs2Code of a failed call. */
async function assertStatus(
  call: Promise<unknown>,
  grpcStatus: status,
  kvs2Code: Kvs2ErrorCode,
  details?: RegExp,
): Promise<void> {
  const error = await rejection(call);
  assert.equal(error.code, grpcStatus, `${error.kvs2Code}: ${error.details}`);
  assert.equal(error.kvs2Code, kvs2Code);
  assert.deepEqual(error.metadata.get('kvs2-error-code'), [kvs2Code]);
  if (details !== undefined) assert.match(error.details, details);
}

/** Collects a watch's events; `ended` settles with the error that ended it (or 'end'). */
function collect(stream: ReturnType<Kvs2Client['watch']>) {
  const events: WatchEvent[] = [];
  const subscribed = once(stream, 'metadata');
  // A watch refused at once never sends headers: `subscribed` then rejects, for whoever awaits it.
  subscribed.catch(() => {});
  stream.on('data', (event: WatchEvent) => events.push(event));
  const ended = new Promise<Kvs2ClientError | 'end'>((resolve) => {
    stream.on('error', (error: ServiceError) => resolve(new Kvs2ClientError(error)));
    stream.on('end', () => resolve('end'));
  });
  /** Resolves once `count` events that are changes have come. */
  const changes = async (count: number): Promise<WatchEvent[]> => {
    const changed = () => events.filter((event) => event.kind !== WatchEvent_Kind.PROGRESS);
    while (changed().length < count) {
      const end = await Promise.race([new Promise((resolve) => stream.once('data', resolve)), ended]);
      if (end === 'end' || end instanceof Kvs2ClientError) assert.fail(`the watch ended: ${String(end)}`);
    }
    return changed();
  };
  return { events, subscribed, ended, changes, cancel: () => stream.cancel() };
}

async function startApi(service: KvService, node: ServiceNode<Replica>, requestTimeoutMs: number) {
  const health = new NodeHealth({ progress: node.replica.progress, maxReadyLag: 0 });
  const api = new GrpcApi({
    service,
    status: new NodeStatusReport({
      version: KVS2_VERSION,
      logKind: 'embedded',
      logDescription: node.log.description,
      startedAtMs: Date.now(),
      health,
      progress: node.replica.progress,
      store: node.store,
      appliedToken: () => service.appliedToken(),
    }),
    health: new HealthService(health),
    limits: node.limits,
    maxRequestBytes: 8 * 1024 * 1024,
    requestTimeoutMs,
  });
  const port = await api.listen('127.0.0.1', 0);
  return { api, health, address: `127.0.0.1:${port}` };
}

describe('the kvs2.Kvs2 handlers over gRPC, in process', () => {
  let node: ServiceNode<Replica>;
  let appender: FailingKeys;
  let api: GrpcApi;
  let health: NodeHealth;
  let address: string;
  let client: Kvs2Client;

  before(async () => {
    node = await startLiveNode({
      limits: { maxReplyBytes: MAX_REPLY_BYTES },
      appender: (log) => {
        appender = new FailingKeys(log);
        return appender;
      },
    });
    ({ api, health, address } = await startApi(node.service, node, 10_000));
    client = new Kvs2Client(address);
  });
  after(async () => {
    client.close();
    await api.shutdown(0);
    await node.close();
  });

  test('Get: OK with the value, OK with an empty value, NOT_FOUND with empty data; each with a token', async () => {
    await client.set({ key: b('full'), value: b('hello'), waitForApply: true });
    await client.set({ key: b('empty'), value: EMPTY, waitForApply: true });
    const full = await client.get({ key: b('full') });
    assert.deepEqual([full.status, full.data], [ReadStatus.OK, b('hello')]);
    const empty = await client.get({ key: b('empty') });
    assert.deepEqual([empty.status, empty.data], [ReadStatus.OK, EMPTY]);
    const missing = await client.get({ key: b('missing') });
    assert.deepEqual([missing.status, missing.data], [ReadStatus.NOT_FOUND, EMPTY]);
    assert.deepEqual(missing.token, node.service.appliedToken());
  });

  test('Get after a token, and LATEST: the consistency values reach the service', async () => {
    const ahead = encodeToken(
      node.service.currentLogTag(),
      new Map([[0, ((await node.log.endOffsets()).get(0) ?? 0) + 1]]),
    );
    const waiting = client.get({ key: b('awaited'), consistency: Consistency.CONSISTENCY_AT_LEAST, after: [ahead] });
    await client.set({ key: b('awaited'), value: b('here') });
    assert.deepEqual((await waiting).data, b('here'));
    await node.log.append(b('latest'), b('elsewhere'));
    const latest = await client.get({ key: b('latest'), consistency: Consistency.CONSISTENCY_LATEST });
    assert.deepEqual([latest.status, latest.data], [ReadStatus.OK, b('elsewhere')]);
  });

  test('MultiGet: one part per key, keys echoed, in order, NOT_FOUND parts with empty data', async () => {
    const written = await client.write({
      mutations: [
        { key: b('m1'), value: b('one'), delete: false },
        { key: b('m2'), value: b('two'), delete: false },
      ],
      waitForApply: true,
    });
    // Each key's version is its write's position: the offset + 1 its token names.
    const [v1, v2] = written.results.map((result) => [...decodeToken(result.token).offsets.values()][0]);
    const reply = await client.multiGet({ keys: ['m2', 'nope', 'm1', 'm2'].map(b) });
    assert.deepEqual(reply.parts, [
      { key: b('m2'), status: ReadStatus.OK, data: b('two'), version: v2 },
      { key: b('nope'), status: ReadStatus.NOT_FOUND, data: EMPTY, version: 0 },
      { key: b('m1'), status: ReadStatus.OK, data: b('one'), version: v1 },
      { key: b('m2'), status: ReadStatus.OK, data: b('two'), version: v2 },
    ]);
    assert.ok(reply.token.length > 0);
  });

  test('Set and Delete answer PUBLISHED with the token of where the write landed', async () => {
    const end = (await node.log.endOffsets()).get(0) ?? 0;
    const set = await client.set({ key: b('gone'), value: b('soon'), waitForApply: true });
    assert.equal(set.status, SetStatus.PUBLISHED);
    assert.deepEqual(decodeToken(set.token).offsets, new Map([[0, end + 1]]));
    const deleted = await client.delete({ key: b('gone'), waitForApply: true });
    assert.equal(deleted.status, SetStatus.PUBLISHED);
    assert.deepEqual(decodeToken(deleted.token).offsets, new Map([[0, end + 2]]));
    assert.equal((await client.get({ key: b('gone') })).status, ReadStatus.NOT_FOUND);
  });

  test('Scan: items in order with their versions, empty values when keys only, an empty continuation at the end', async () => {
    const written = await client.write({
      mutations: ['s/1', 's/2', 's/3'].map((key) => ({ key: b(key), value: b(`v${key}`), delete: false })),
      waitForApply: true,
    });
    const [v1, v2, v3] = written.results.map((result) => [...decodeToken(result.token).offsets.values()][0]);
    const first = await client.scan({ prefix: b('s/'), limit: 2, keysOnly: true });
    assert.deepEqual(first.items, [
      { key: b('s/1'), value: EMPTY, version: v1 },
      { key: b('s/2'), value: EMPTY, version: v2 },
    ]);
    assert.deepEqual(first.continuation, b('s/2'));
    const last = await client.scan({ prefix: b('s/'), limit: 2, continuation: first.continuation });
    assert.deepEqual(last.items, [{ key: b('s/3'), value: b('vs/3'), version: v3 }]);
    assert.deepEqual(last.continuation, EMPTY);
  });

  test('Write: each mutation its own status code, message and token; the reply token covers the published', async () => {
    appender.failing.set('w/refused', new Kvs2Error('LOG_UNAVAILABLE', 'no leader for the partition'));
    const reply = await client.write({
      mutations: [
        { key: b('w/ok'), value: b('1'), delete: false },
        { key: b('w/refused'), value: b('2'), delete: false },
        { key: b('w/deleted'), value: EMPTY, delete: true },
      ],
    });
    assert.deepEqual(
      reply.results.map((r) => [r.code, r.message, r.token.length > 0]),
      [
        [status.OK, '', true],
        [status.UNAVAILABLE, 'no leader for the partition', false],
        [status.OK, '', true],
      ],
    );
    const published = reply.results.filter((r) => r.code === status.OK).map((r) => decodeToken(r.token).offsets.get(0));
    assert.deepEqual(decodeToken(reply.token).offsets, new Map([[0, Math.max(...(published as number[]))]]));
  });

  describe('errors: the gRPC status, the kvs2-error-code trailer, and Kvs2ClientError.kvs2Code', () => {
    test('INVALID_ARGUMENT for bad fields of every RPC, with the field named', async () => {
      const invalid = (call: Promise<unknown>, details: RegExp) =>
        assertStatus(call, status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', details);
      await invalid(client.get({ key: EMPTY }), /^key is empty/);
      await invalid(client.get({ key: b('k'), consistency: 9 as Consistency }), /consistency 9 is not a known/);
      await invalid(
        client.get({ key: b('k'), consistency: Consistency.CONSISTENCY_AT_LEAST }),
        /needs at least one token/,
      );
      await invalid(client.get({ key: b('k'), after: [b('garbage')] }), /^after is not a kvs2 consistency token/);
      await invalid(client.multiGet({ keys: [b('a'), EMPTY] }), /^keys\[1\] is empty/);
      await invalid(client.scan({ start: b('z'), end: b('a') }), /start is after end/);
      await invalid(client.scan({ limit: node.limits.maxBatchKeys + 1 }), /^limit is/);
      await invalid(client.set({ key: b('k'), value: Buffer.alloc(node.limits.maxValueBytes + 1) }), /^value is/);
      await invalid(client.delete({ key: EMPTY }), /^key is empty/);
      await invalid(
        client.write({ mutations: [{ key: b('k'), value: b('v'), delete: true }] }),
        /^mutations\[0\] is a delete with a value/,
      );
    });

    test('FAILED_PRECONDITION for a token of another log', async () => {
      const foreign = encodeToken(logTagOf('another cluster'), new Map([[0, 1]]));
      await assertStatus(
        client.get({ key: b('k'), after: [foreign] }),
        status.FAILED_PRECONDITION,
        'TOKEN_FROM_OTHER_LOG',
      );
    });

    test('RESOURCE_EXHAUSTED for a MultiGet reply over --max-reply-bytes', async () => {
      const value = Buffer.alloc(MAX_REPLY_BYTES / 2, 1);
      await client.write({
        mutations: [
          { key: b('r/1'), value, delete: false },
          { key: b('r/2'), value, delete: false },
        ],
        waitForApply: true,
      });
      await assertStatus(
        client.multiGet({ keys: [b('r/1'), b('r/2')] }),
        status.RESOURCE_EXHAUSTED,
        'REPLY_TOO_LARGE',
        /reached at keys\[1\]/,
      );
    });

    test('RESOURCE_EXHAUSTED with REPLY_TOO_LARGE for a Get or Scan of a value over --max-reply-bytes', async () => {
      // As another producer may write it: the service never saw this value.
      const value = Buffer.alloc(4 * MAX_REPLY_BYTES, 1);
      await node.log.append(b('oversized'), value);
      await assertStatus(
        client.get({ key: b('oversized'), consistency: Consistency.CONSISTENCY_LATEST }),
        status.RESOURCE_EXHAUSTED,
        'REPLY_TOO_LARGE',
      );
      await assertStatus(client.scan({ prefix: b('oversized') }), status.RESOURCE_EXHAUSTED, 'REPLY_TOO_LARGE');
    });

    test('UNAVAILABLE with LOG_UNAVAILABLE when the log refuses a Set', async () => {
      appender.failing.set('refused', new Kvs2Error('LOG_UNAVAILABLE', 'no leader for the partition'));
      await assertStatus(
        client.set({ key: b('refused'), value: b('x') }),
        status.UNAVAILABLE,
        'LOG_UNAVAILABLE',
        /no leader/,
      );
    });
  });

  describe('Watch', () => {
    test('streams PUT and DELETE events with tokens once subscribed (the response headers say so)', async () => {
      const watch = collect(client.watch({ prefix: b('watch/') }));
      await watch.subscribed;
      const set = await client.set({ key: b('watch/a'), value: b('1') });
      const deleted = await client.delete({ key: b('watch/a') });
      const events = await watch.changes(2);
      // Each event's version is its record's position, the offset + 1 the write's token names.
      const position = (token: Buffer) => [...decodeToken(token).offsets.values()][0];
      assert.deepEqual(
        events.map((e) => [e.kind, e.key.toString(), e.value.toString(), e.version]),
        [
          [WatchEvent_Kind.PUT, 'watch/a', '1', position(set.token)],
          [WatchEvent_Kind.DELETE, 'watch/a', '', position(deleted.token)],
        ],
      );
      assert.ok(events.every((e) => decodeToken(e.token).logTag.equals(node.service.currentLogTag())));
      watch.cancel();
    });

    test('a bad request ends the stream with INVALID_ARGUMENT and the trailer; another log FAILED_PRECONDITION', async () => {
      const both = await collect(client.watch({ key: b('a'), prefix: b('a') })).ended;
      assert.ok(both instanceof Kvs2ClientError);
      assert.deepEqual([both.code, both.kvs2Code], [status.INVALID_ARGUMENT, 'INVALID_ARGUMENT']);
      assert.match(both.details, /either key or prefix/);
      const foreign = encodeToken(logTagOf('another cluster'), new Map([[0, 1]]));
      const other = await collect(client.watch({ after: foreign })).ended;
      assert.ok(other instanceof Kvs2ClientError);
      assert.deepEqual([other.code, other.kvs2Code], [status.FAILED_PRECONDITION, 'TOKEN_FROM_OTHER_LOG']);
    });
  });

  describe('a body that is not a valid encoding of its message', () => {
    let raw: RawGrpcClient;
    before(async () => {
      raw = await RawGrpcClient.connect(address);
    });
    after(async () => {
      await raw.close();
    });

    test('Set with a stray END_GROUP is INVALID_ARGUMENT with the trailer, and nothing is written', async () => {
      const end = await node.log.endOffsets();
      const reply = await raw.call(
        'Set',
        Buffer.concat([bytesField(1, 'malformed'), Buffer.of(END_GROUP_BYTE), bytesField(2, 'value')]),
      );
      assert.equal(reply.grpcStatus, status.INVALID_ARGUMENT);
      assert.equal(reply.metadata['kvs2-error-code'], 'INVALID_ARGUMENT');
      assert.match(reply.grpcMessage, /^malformed request: /);
      assert.deepEqual(await node.log.endOffsets(), end);
      assert.equal((await client.get({ key: b('malformed') })).status, ReadStatus.NOT_FOUND);
    });

    test('a known field with the wrong wire type, on a unary call and on Watch', async () => {
      for (const method of ['Get', 'Watch']) {
        const reply = await raw.call(method, varintField(1, 5));
        assert.equal(reply.grpcStatus, status.INVALID_ARGUMENT, method);
        assert.equal(reply.metadata['kvs2-error-code'], 'INVALID_ARGUMENT', method);
        assert.deepEqual(reply.frames, [], method);
      }
    });

    test('a well-formed body is served: the raw client reaches the same handlers', async () => {
      const reply = await raw.call('Get', bytesField(1, 'full'));
      assert.equal(reply.grpcStatus, status.OK);
      assert.equal(reply.frames.length, 1);
    });
  });

  test('health is NOT_SERVING until the node says it serves; liveness once it listens', async () => {
    const checker = new HealthClient(address);
    try {
      assert.equal(await checker.check('kvs2.Kvs2'), 'NOT_SERVING');
      assert.equal(await checker.check('liveness'), 'NOT_SERVING');
      health.listening();
      assert.equal(await checker.check('liveness'), 'SERVING');
      assert.equal(await checker.check('kvs2.Kvs2'), 'NOT_SERVING');
      health.caughtUp(true);
      assert.equal(await checker.check(''), 'SERVING');
      assert.equal(await checker.check('kvs2.Kvs2'), 'SERVING');
    } finally {
      checker.close();
    }
  });
});

describe('the handlers at the edges of a call: deadline, shutdown', () => {
  let node: ServiceNode<Replica>;
  let service: KvService;
  let api: GrpcApi;
  let client: Kvs2Client;
  let watcher: Kvs2Client;
  const SERVER_TIMEOUT_MS = 50;

  before(async () => {
    node = await startLiveNode();
    // Its own service, so that closing it ends nothing else.
    service = new KvService({
      log: node.log,
      conditional: new ConditionalWrites({
        log: node.log,
        applied: node.replica.watermark,
        feed: node.replica.changes,
        store: node.store,
      }),
      store: node.store,
      applied: node.replica.watermark,
      changes: { feed: node.replica.changes, history: node.log },
      limits: node.limits,
      maxReplyBytesInFlight: 256 * 1024 * 1024,
    });
    let address: string;
    ({ api, address } = await startApi(service, node, SERVER_TIMEOUT_MS));
    client = new Kvs2Client(address);
    watcher = new Kvs2Client(address, { ownConnection: true });
  });
  after(async () => {
    node.log.resumeAppends();
    client.close();
    watcher.close();
    await api.shutdown(0);
    await node.close();
  });

  test("a read waiting past the server's timeout is DEADLINE_EXCEEDED with the trailer", async () => {
    const far = encodeToken(service.currentLogTag(), new Map([[0, 1_000_000]]));
    await assertStatus(
      client.get({ key: b('k'), consistency: Consistency.CONSISTENCY_AT_LEAST, after: [far] }),
      status.DEADLINE_EXCEEDED,
      'DEADLINE_EXCEEDED',
    );
  });

  test("the call's deadline reaches the log: a Set that times out while appends wait is never written", async () => {
    const end = await node.log.endOffsets();
    node.log.pauseAppends();
    try {
      await assertStatus(client.set({ key: b('late'), value: b('x') }), status.DEADLINE_EXCEEDED, 'DEADLINE_EXCEEDED');
      await assertStatus(
        client.write({ mutations: [{ key: b('late-w'), value: b('x'), delete: false }] }),
        status.DEADLINE_EXCEEDED,
        'DEADLINE_EXCEEDED',
      );
    } finally {
      node.log.resumeAppends();
    }
    assert.deepEqual(await node.log.endOffsets(), end);
  });

  test('after the service closes, writes are UNAVAILABLE with SHUTTING_DOWN and reads are served', async () => {
    await service.set({ key: b('kept'), value: b('v'), waitForApply: true }, noDeadline());
    service.close();
    await assertStatus(client.set({ key: b('k'), value: b('v') }), status.UNAVAILABLE, 'SHUTTING_DOWN');
    await assertStatus(client.delete({ key: b('kept') }), status.UNAVAILABLE, 'SHUTTING_DOWN');
    await assertStatus(
      client.write({ mutations: [{ key: b('k'), value: b('v'), delete: false }] }),
      status.UNAVAILABLE,
      'SHUTTING_DOWN',
    );
    assert.deepEqual((await client.get({ key: b('kept') })).data, b('v'));
  });

  test('shutdown ends open watches with UNAVAILABLE and SHUTTING_DOWN, so that they resume elsewhere', async () => {
    const watch = collect(watcher.watch({ prefix: b('w/') }));
    await watch.subscribed;
    assert.equal(await api.shutdown(5000), true);
    const ended = await watch.ended;
    assert.ok(ended instanceof Kvs2ClientError);
    assert.deepEqual([ended.code, ended.kvs2Code], [status.UNAVAILABLE, 'SHUTTING_DOWN']);
    assert.match(ended.details, /resume the watch from its last token/);
  });
});

describe('a shutdown whose grace period runs out', () => {
  test('calls still waiting are answered UNAVAILABLE with SHUTTING_DOWN before the connections close', async () => {
    const node = await startLiveNode();
    const { api, address } = await startApi(node.service, node, 60_000);
    const client = new Kvs2Client(address);
    node.log.pauseAppends();
    try {
      const stuck = client.set({ key: b('stuck'), value: b('x') }, 60_000);
      await eventually(() => node.log.pausedAppends === 1, 10_000, 'the Set to wait for its append');
      const [outcome, graceful] = await Promise.allSettled([stuck, api.shutdown(50)]);
      assert.deepEqual(graceful, { status: 'fulfilled', value: false });
      assert.equal(outcome.status, 'rejected');
      // Not a connection torn down under the call, which its client would see as INTERNAL.
      await assertStatus(Promise.reject(outcome.reason), status.UNAVAILABLE, 'SHUTTING_DOWN', /shut down before/);
    } finally {
      node.log.resumeAppends();
      client.close();
      await node.close();
    }
  });
});
