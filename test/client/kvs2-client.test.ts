import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { credentials, ServerCredentials, status } from '@grpc/grpc-js';
import {
  ConditionKind,
  Consistency,
  Kvs2Client,
  Kvs2ClientError,
  Kvs2ClientOptionError,
  type Kvs2ClientOptions,
  ReadStatus,
  SetStatus,
} from '../../src/client/index.js';
import { decodeToken, encodeToken } from '../../src/service/consistency-token.js';
import { tempDir } from '../support/paths.js';
import { ServerProcess } from '../support/server-process.js';
import { STAND_IN_STATUS, StandInNode, type UnaryMethod } from '../support/stand-in-node.js';
import { type MutualTlsStandIn, needsOpenssl, startMutualTlsStandIn, testCa } from '../support/tls-certificates.js';

const b = (text: string): Buffer => Buffer.from(text);
const FAST_RETRIES = { initialBackoffMs: 5, maxBackoffMs: 20 };

/** Each method called with the smallest request it takes. */
const CALL: Readonly<Record<UnaryMethod, (client: Kvs2Client) => Promise<unknown>>> = {
  get: (client) => client.get({ key: b('k') }),
  multiGet: (client) => client.multiGet({ keys: [b('k')] }),
  scan: (client) => client.scan({ prefix: b('k') }),
  status: (client) => client.status(),
  set: (client) => client.set({ key: b('k'), value: b('v') }),
  delete: (client) => client.delete({ key: b('k') }),
  write: (client) => client.write({ mutations: [{ key: b('k'), value: b('v'), delete: false }] }),
};
const READS: readonly UnaryMethod[] = ['get', 'multiGet', 'scan', 'status'];
const WRITES: readonly UnaryMethod[] = ['set', 'delete', 'write'];

async function rejection(promise: Promise<unknown>): Promise<Kvs2ClientError> {
  const outcome = await promise.then(
    () => assert.fail('the call succeeded'),
    (error: unknown) => error,
  );
  assert.ok(outcome instanceof Kvs2ClientError, String(outcome));
  return outcome;
}

describe('Kvs2Client retries of reads', () => {
  let node: StandInNode;
  let client: Kvs2Client;

  before(async () => {
    node = await StandInNode.start(ServerCredentials.createInsecure());
    client = new Kvs2Client({ endpoint: node.address, readRetries: { maxAttempts: 4, ...FAST_RETRIES } });
  });
  after(async () => {
    client.close();
    await node.close();
  });

  for (const method of READS) {
    test(`${method}: retried on UNAVAILABLE until it succeeds`, async () => {
      const callsBefore = node.callsOf(method);
      node.fail(method, 3);
      await CALL[method](client);
      assert.equal(node.callsOf(method) - callsBefore, 4);
    });
  }

  test('a read still UNAVAILABLE after the last attempt rejects with the kvs2 code of the last answer', async () => {
    const callsBefore = node.callsOf('get');
    node.fail('get', 10, status.UNAVAILABLE, 'SHUTTING_DOWN');
    const error = await rejection(CALL.get(client));
    assert.deepEqual(
      [error.code, error.kvs2Code, node.callsOf('get') - callsBefore],
      [status.UNAVAILABLE, 'SHUTTING_DOWN', 4],
    );
    node.fail('get', 0);
  });

  test('a read refused for another reason is not retried', async () => {
    const callsBefore = node.callsOf('scan');
    node.fail('scan', 1, status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
    const error = await rejection(CALL.scan(client));
    assert.deepEqual([error.kvs2Code, node.callsOf('scan') - callsBefore], ['INVALID_ARGUMENT', 1]);
  });

  for (const method of WRITES) {
    test(`${method}: never retried, even on UNAVAILABLE`, async () => {
      const callsBefore = node.callsOf(method);
      node.fail(method, 1);
      const error = await rejection(CALL[method](client));
      assert.deepEqual([error.kvs2Code, node.callsOf(method) - callsBefore], ['LOG_UNAVAILABLE', 1]);
      // The next call goes through: the failure above was the only one.
      await CALL[method](client);
    });
  }

  test('readRetries: false turns retries off', async () => {
    const once = new Kvs2Client(node.address, { readRetries: false });
    try {
      const callsBefore = node.callsOf('get');
      node.fail('get', 1);
      await rejection(CALL.get(once));
      assert.equal(node.callsOf('get') - callsBefore, 1);
    } finally {
      once.close();
    }
  });

  test('snapshot(): yields each chunk in order, with no deadline unless asked', async () => {
    const chunks = [b('KVS2'), b('SNAP'), Buffer.alloc(100_000, 7)];
    node.snapshotScript = { chunks };
    const received: Buffer[] = [];
    for await (const chunk of client.snapshot()) received.push(chunk);
    assert.deepEqual(received, chunks);
  });

  test('snapshot(): a stream that breaks off UNAVAILABLE half-way is never retried, and throws Kvs2ClientError', async () => {
    node.snapshotScript = {
      chunks: [b('first'), b('second')],
      failure: { code: status.UNAVAILABLE, kvs2Code: 'SHUTTING_DOWN' },
    };
    const callsBefore = node.callsOf('snapshot');
    const received: string[] = [];
    const error = await rejection(
      (async () => {
        for await (const chunk of client.snapshot()) received.push(chunk.toString());
      })(),
    );
    assert.deepEqual(
      [error.code, error.kvs2Code, received, node.callsOf('snapshot') - callsBefore],
      [status.UNAVAILABLE, 'SHUTTING_DOWN', ['first', 'second'], 1],
    );
    // Refused before any chunk: not retried either.
    node.snapshotScript = { chunks: [], failure: { code: status.UNAVAILABLE, kvs2Code: 'LOG_UNAVAILABLE' } };
    const refused = await rejection(
      (async () => {
        for await (const _chunk of client.snapshot()) assert.fail('no chunk was scripted');
      })(),
    );
    assert.deepEqual([refused.kvs2Code, node.callsOf('snapshot') - callsBefore], ['LOG_UNAVAILABLE', 2]);
  });

  test('snapshot(): an abort signal ends the stream with GRPC_CANCELLED', async () => {
    node.snapshotScript = { chunks: Array.from({ length: 50 }, (_, i) => b(`chunk ${i}`)) };
    const stop = new AbortController();
    const error = await rejection(
      (async () => {
        for await (const _chunk of client.snapshot({ signal: stop.signal })) stop.abort();
      })(),
    );
    assert.equal(error.kvs2Code, 'GRPC_CANCELLED');
    const before = await rejection(
      (async () => {
        for await (const _chunk of client.snapshot({ signal: stop.signal })) assert.fail('already aborted');
      })(),
    );
    assert.equal(before.kvs2Code, 'GRPC_CANCELLED');
  });

  test('status() returns the node status over the wire', async () => {
    assert.deepEqual(await client.status(), STAND_IN_STATUS);
  });

  test('an unreachable endpoint fails UNAVAILABLE after the retries, within the deadline', async () => {
    const nowhere = new Kvs2Client('127.0.0.1:1', { timeoutMs: 20_000, readRetries: FAST_RETRIES });
    try {
      const error = await rejection(nowhere.get({ key: b('k') }));
      assert.deepEqual([error.code, error.kvs2Code], [status.UNAVAILABLE, 'GRPC_UNAVAILABLE']);
    } finally {
      nowhere.close();
    }
  });
});

describe('Kvs2Client against a node that predates conditional writes', () => {
  let node: StandInNode;
  let client: Kvs2Client;
  before(async () => {
    // The stand-in answers every write PUBLISHED and knows nothing of conditions, as a kvs2 before them did.
    node = await StandInNode.start(ServerCredentials.createInsecure());
    client = new Kvs2Client(node.address);
  });
  after(async () => {
    client.close();
    await node.close();
  });

  const absent = { kind: ConditionKind.CONDITION_ABSENT, version: 0 };
  const conditional: Readonly<Record<'set' | 'delete' | 'write', () => Promise<unknown>>> = {
    set: () => client.set({ key: b('k'), value: b('v'), condition: absent }),
    delete: () => client.delete({ key: b('k'), condition: absent }),
    write: () => client.write({ mutations: [{ key: b('k'), value: b('v'), delete: false, condition: absent }] }),
  };
  for (const [method, call] of Object.entries(conditional)) {
    test(`a conditional ${method} answered PUBLISHED rejects FAILED_PRECONDITION, never passing for a compare-and-set`, async () => {
      const error = await rejection(call());
      assert.equal(error.code, status.FAILED_PRECONDITION);
      assert.match(error.message, /does not know conditional writes/);
    });
  }

  test('writes without a condition (or CONDITION_NONE) are answered as before', async () => {
    assert.equal((await client.set({ key: b('k'), value: b('v') })).status, SetStatus.PUBLISHED);
    const none = { kind: ConditionKind.CONDITION_NONE, version: 0 };
    assert.equal((await client.set({ key: b('k'), value: b('v'), condition: none })).status, SetStatus.PUBLISHED);
    const written = await client.write({ mutations: [{ key: b('k'), value: b('v'), delete: false }] });
    assert.equal(written.status, SetStatus.PUBLISHED);
  });
});

describe('Kvs2Client options', () => {
  test('wrong options throw Kvs2ClientOptionError naming the option, before anything opens', () => {
    const cases: Array<[string, () => Kvs2Client]> = [
      ['endpoint', () => new Kvs2Client({ timeoutMs: 5 } as Kvs2ClientOptions & { endpoint: string })],
      ['endpoint', () => new Kvs2Client('')],
      ['timeoutMs', () => new Kvs2Client('127.0.0.1:1', { timeoutMs: 0 })],
      ['timeoutMs', () => new Kvs2Client('127.0.0.1:1', { timeoutMs: 1.5 })],
      ['readRetries.maxAttempts', () => new Kvs2Client('127.0.0.1:1', { readRetries: { maxAttempts: 6 } })],
      ['readRetries.maxAttempts', () => new Kvs2Client('127.0.0.1:1', { readRetries: { maxAttempts: 1 } })],
      [
        'readRetries.maxBackoffMs',
        () => new Kvs2Client('127.0.0.1:1', { readRetries: { initialBackoffMs: 500, maxBackoffMs: 100 } }),
      ],
      ['tls.key', () => new Kvs2Client('127.0.0.1:1', { tls: { cert: Buffer.from('x') } })],
      ['tls.cert', () => new Kvs2Client('127.0.0.1:1', { tls: { key: Buffer.from('x') } })],
      ['tls.ca', () => new Kvs2Client('127.0.0.1:1', { tls: { ca: '/nonexistent/ca.pem' } })],
      ['tls', () => new Kvs2Client('127.0.0.1:1', { tls: true, credentials: credentials.createInsecure() })],
    ];
    for (const [option, build] of cases) {
      assert.throws(
        build,
        (error: unknown) => error instanceof Kvs2ClientOptionError && error.option === option,
        option,
      );
    }
  });
});

describe('Kvs2Client over TLS', needsOpenssl(), () => {
  let stand: MutualTlsStandIn;
  let node: StandInNode;
  let server: { cert: string; key: string };
  let clientPair: { cert: string; key: string };

  before(async () => {
    // Mutual TLS: the node trusts only the client's certificate.
    stand = await startMutualTlsStandIn('client-tls');
    ({ node, server, client: clientPair } = stand);
  });
  after(() => stand.close());

  test('CA and client certificate as paths, key as a Buffer, server name overridden: the call goes through', async () => {
    const client = new Kvs2Client(node.address, {
      tls: { ca: server.cert, cert: clientPair.cert, key: readFileSync(clientPair.key), serverName: 'kvs2.test' },
    });
    try {
      assert.deepEqual(await client.status(), STAND_IN_STATUS);
    } finally {
      client.close();
    }
  });

  test('PEM text works as well as a path', async () => {
    const client = new Kvs2Client(node.address, {
      tls: {
        ca: readFileSync(server.cert, 'utf8'),
        cert: readFileSync(clientPair.cert, 'utf8'),
        key: clientPair.key,
        serverName: 'kvs2.test',
      },
    });
    try {
      const reply = await client.get({ key: b('k') });
      assert.deepEqual([reply.data.toString(), reply.version], ['value', 7]);
    } finally {
      client.close();
    }
  });

  test('without the client certificate, or in plaintext, the node cannot be reached', async () => {
    const callsBefore = node.callsOf('get');
    for (const options of [
      { tls: { ca: server.cert, serverName: 'kvs2.test' } },
      {},
      // The right client certificate but a CA that did not sign the node's.
      { tls: { ca: clientPair.cert, cert: clientPair.cert, key: clientPair.key, serverName: 'kvs2.test' } },
    ]) {
      const client = new Kvs2Client(node.address, { ...options, timeoutMs: 10_000, readRetries: false });
      try {
        const error = await rejection(client.get({ key: b('k') }));
        assert.equal(error.code, status.UNAVAILABLE, JSON.stringify(options));
      } finally {
        client.close();
      }
    }
    assert.equal(node.callsOf('get'), callsBefore);
  });
});

describe('Kvs2Client against a real node serving mutual TLS', {
  ...needsOpenssl(),
}, () => {
  test('with a certificate signed by --tls-client-ca it writes and reads; without one it is UNAVAILABLE', async () => {
    const dir = await tempDir('client-tls-node');
    const ca = testCa(dir.path, 'ca');
    const served = ca.leaf('kvs2.test');
    const server = await ServerProcess.start({
      dataDir: `${dir.path}/node`,
      args: ['--tls-cert', served.cert, '--tls-key', served.key, '--tls-client-ca', ca.cert],
    });
    const trust = { ca: ca.cert, serverName: 'kvs2.test' };
    const client = new Kvs2Client(server.address, { tls: { ...trust, ...ca.leaf('client.test') } });
    const anonymous = new Kvs2Client(server.address, { tls: trust, readRetries: false, ownConnection: true });
    try {
      // Applied before the read: a plain Set is acknowledged once the log has it, before this node applies it.
      await client.set({ key: b('c/k'), value: b('v'), waitForApply: true });
      assert.equal((await client.get({ key: b('c/k') })).data.toString(), 'v');
      assert.equal((await rejection(anonymous.get({ key: b('c/k') }))).code, status.UNAVAILABLE);
    } finally {
      client.close();
      anonymous.close();
      await server.stop();
      await dir.remove();
    }
  });
});

describe('Kvs2Client cancelling unary calls, against a real node', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let server: ServerProcess;
  let client: Kvs2Client;
  before(async () => {
    dir = await tempDir('client-cancel');
    server = await ServerProcess.start({ dataDir: dir.path });
    client = new Kvs2Client(server.address);
  });
  after(async () => {
    client.close();
    await server.stop();
    await dir.remove();
  });

  test('aborting the signal of a waiting call cancels it: GRPC_CANCELLED, long before its deadline', async () => {
    const { token } = await client.set({ key: b('cancel/seen'), value: b('v'), waitForApply: true });
    // A token 1,000 records past the log's end: the read waits for writes nobody makes.
    const { logTag, offsets } = decodeToken(token);
    const ahead = encodeToken(logTag, new Map([...offsets].map(([partition, offset]) => [partition, offset + 1000])));
    const stop = new AbortController();
    const waiting = client.get(
      { key: b('cancel/seen'), consistency: Consistency.CONSISTENCY_AT_LEAST, after: [ahead] },
      { timeoutMs: 10 * 60_000, signal: stop.signal },
    );
    setTimeout(() => stop.abort(), 100);
    const error = await rejection(waiting);
    // Without the cancel it would wait out its ten minutes and end DEADLINE_EXCEEDED.
    assert.deepEqual([error.code, error.kvs2Code], [status.CANCELLED, 'GRPC_CANCELLED']);
  });

  test('a call whose signal aborted before it began is never sent: the write does not land', async () => {
    const error = await rejection(
      client.set({ key: b('cancel/never'), value: b('v') }, { signal: AbortSignal.abort() }),
    );
    assert.equal(error.kvs2Code, 'GRPC_CANCELLED');
    // A later write's apply covers everything before it: had the first been sent, it would be readable now.
    await client.set({ key: b('cancel/after'), value: b('v'), waitForApply: true });
    assert.equal((await client.get({ key: b('cancel/never') })).status, ReadStatus.NOT_FOUND);
  });

  test('options as an object: a deadline of its own, and a signal that never aborts changes nothing', async () => {
    const live = new AbortController();
    await client.set(
      { key: b('cancel/ok'), value: b('v'), waitForApply: true },
      { timeoutMs: 5_000, signal: live.signal },
    );
    assert.equal((await client.get({ key: b('cancel/ok') }, { timeoutMs: 5_000 })).data.toString(), 'v');
    assert.equal((await client.status({}, { signal: live.signal })).state !== undefined, true);
  });
});
