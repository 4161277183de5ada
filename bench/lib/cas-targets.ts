import { type CallOptions, Client, credentials, type ServiceError } from '@grpc/grpc-js';
import { loadSync, type MethodDefinition } from '@grpc/proto-loader';
import { ConditionKind, Consistency, Kvs2Client, SetStatus } from '../../src/client/index.js';

/**
 * The two calls of a read-modify-write increment on one system, as its own client makes them: a read that
 * gives the counter and its version, then a write that happens only if the version is still the one read.
 * `worker` says which worker calls, so a system can keep what that worker last learned (kvs2's tokens).
 */
export interface CasTarget {
  /** How the read is made, for the results. */
  readonly readDescription: string;
  read(worker: number, key: Buffer): Promise<CounterRead>;
  /** Writes `next` if the key's version is still `expected` (0: absent). True if written, false on conflict. */
  conditionalWrite(worker: number, key: Buffer, next: number, expected: number): Promise<boolean>;
  /** The counter as a read that sees every acknowledged write finds it (the final check). */
  finalCounter(key: Buffer): Promise<number>;
  close(): void;
}

export interface CounterRead {
  readonly counter: number;
  /** 0 when the key is absent. */
  readonly version: number;
}

/** A counter's value: its decimal digits. */
export function counterValue(n: number): Buffer {
  return Buffer.from(String(n));
}

function parseCounter(data: Uint8Array): number {
  const n = Number(Buffer.from(data).toString('utf8'));
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`a counter holds ${JSON.stringify(String(data))}`);
  return n;
}

/**
 * kvs2 through its Node client, `connections` connections (workers share them round robin). A worker's read
 * waits for the last write it was answered about (CONSISTENCY_AT_LEAST with the token of its last Set reply:
 * its own write, or with CONFLICT what the node had applied when it decided), which is the cheapest read
 * that cannot miss the worker's own increment; before any reply it reads what the node has (LOCAL).
 */
export function kvs2CasTarget(endpoint: string, connections: number): CasTarget {
  const clients = Array.from(
    { length: Math.max(1, connections) },
    () => new Kvs2Client(endpoint, { ownConnection: true, timeoutMs: 10_000 }),
  );
  const clientOf = (worker: number) => clients[worker % clients.length] as Kvs2Client;
  const tokens = new Map<number, Buffer>();
  return {
    readDescription: 'Get, CONSISTENCY_AT_LEAST the token of the worker’s last Set reply',
    async read(worker, key) {
      const token = tokens.get(worker);
      const reply = await clientOf(worker).get(
        token === undefined ? { key } : { key, consistency: Consistency.CONSISTENCY_AT_LEAST, after: [token] },
      );
      return { counter: reply.version === 0 ? 0 : parseCounter(reply.data), version: reply.version };
    },
    async conditionalWrite(worker, key, next, expected) {
      const reply = await clientOf(worker).set({
        key,
        value: counterValue(next),
        condition:
          expected === 0
            ? { kind: ConditionKind.CONDITION_ABSENT, version: 0 }
            : { kind: ConditionKind.CONDITION_VERSION, version: expected },
      });
      tokens.set(worker, reply.token);
      if (reply.status === SetStatus.APPLIED) return true;
      if (reply.status === SetStatus.CONFLICT) return false;
      throw new Error(`a conditional Set answered status ${reply.status} (neither APPLIED nor CONFLICT)`);
    },
    async finalCounter(key) {
      const reply = await clients[0]?.get({ key, consistency: Consistency.CONSISTENCY_LATEST });
      if (reply === undefined) throw new Error('no client');
      return reply.version === 0 ? 0 : parseCounter(reply.data);
    },
    close() {
      for (const client of clients) client.close();
    },
  };
}

// etcd's messages as proto-loader gives them (keepCase, longs as numbers, enums as names), the fields used.
interface EtcdKeyValue {
  readonly key: Buffer;
  readonly mod_revision: number;
  readonly value: Buffer;
}
interface EtcdRangeRequest {
  readonly key: Buffer;
  readonly serializable?: boolean;
}
interface EtcdRangeResponse {
  readonly kvs?: readonly EtcdKeyValue[];
}
interface EtcdCompare {
  readonly result: 'EQUAL';
  readonly target: 'MOD';
  readonly key: Buffer;
  readonly mod_revision: number;
}
interface EtcdRequestOp {
  readonly request_put?: { readonly key: Buffer; readonly value: Buffer };
  readonly request_range?: EtcdRangeRequest;
}
interface EtcdTxnRequest {
  readonly compare: readonly EtcdCompare[];
  readonly success: readonly EtcdRequestOp[];
  readonly failure: readonly EtcdRequestOp[];
}
interface EtcdTxnResponse {
  readonly succeeded?: boolean;
}

/**
 * etcd through @grpc/grpc-js and bench/proto/etcd-kv.proto, `connections` connections. The read is a
 * serializable Range: on one member it reads the applied state, which holds every Txn already answered
 * (etcd answers a Txn once applied), so like kvs2's read it cannot miss the worker's own increment, and it
 * skips the linearizable read's round through raft. The write is etcd's compare-and-put: `Txn` comparing
 * the key's mod_revision (0: absent) with the one read, a put on success, a range on failure.
 */
export function etcdCasTarget(endpoint: string, connections: number, protoFile: string): CasTarget {
  const definition = loadSync(protoFile, { keepCase: true, longs: Number, enums: String, defaults: false });
  const service = definition['etcdserverpb.KV'] as Record<string, MethodDefinition<object, object>> | undefined;
  const rangeMethod = service?.Range as MethodDefinition<EtcdRangeRequest, EtcdRangeResponse> | undefined;
  const txnMethod = service?.Txn as MethodDefinition<EtcdTxnRequest, EtcdTxnResponse> | undefined;
  if (rangeMethod === undefined || txnMethod === undefined) throw new Error(`${protoFile} has no KV.Range and KV.Txn`);
  const clients = Array.from(
    { length: Math.max(1, connections) },
    // A channel of its own each (grpc-js shares one per target by default).
    () => new Client(endpoint, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }),
  );
  const clientOf = (worker: number) => clients[worker % clients.length] as Client;
  const unary = <Req, Res>(client: Client, method: MethodDefinition<Req, Res>, request: Req): Promise<Res> =>
    new Promise((resolve, reject) => {
      const options: CallOptions = { deadline: Date.now() + 10_000 };
      client.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        request,
        options,
        (error: ServiceError | null, reply?: Res) =>
          error || reply === undefined ? reject(error ?? new Error('no reply')) : resolve(reply),
      );
    });
  const range = async (worker: number, key: Buffer, serializable: boolean): Promise<CounterRead> => {
    const reply = await unary(clientOf(worker), rangeMethod, { key, serializable });
    const kv = reply.kvs?.[0];
    return kv === undefined
      ? { counter: 0, version: 0 }
      : { counter: parseCounter(kv.value), version: kv.mod_revision };
  };
  return {
    readDescription: 'Range, serializable',
    read: (worker, key) => range(worker, key, true),
    async conditionalWrite(worker, key, next, expected) {
      const reply = await unary(clientOf(worker), txnMethod, {
        compare: [{ result: 'EQUAL', target: 'MOD', key, mod_revision: expected }],
        success: [{ request_put: { key, value: counterValue(next) } }],
        failure: [{ request_range: { key } }],
      });
      return reply.succeeded === true;
    },
    // Linearizable: the final check asks etcd's leader for its latest state.
    finalCounter: async (key) => (await range(0, key, false)).counter,
    close() {
      for (const client of clients) client.close();
    },
  };
}
