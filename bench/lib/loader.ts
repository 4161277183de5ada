import { type ChannelCredentials, Client, credentials } from '@grpc/grpc-js';
import { keyFor, valueFor } from './dataset.js';
import { CLIENT_CORE, runChecked } from './processes.js';

/**
 * Loads the data set into each system as fast as it takes it. This is not a measurement: it only has
 * to be quick and to leave identical data everywhere. gRPC systems get many concurrent calls over a few
 * connections (etcd: Txn of 100 Puts, its fastest bulk path); Redis gets a `redis-cli --pipe` stream.
 */

export interface LoadProgress {
  readonly loaded: number;
  readonly seconds: number;
}

const IN_FLIGHT = 256;
const CONNECTIONS = 4;
const ETCD_PUTS_PER_TXN = 100;

/** Protobuf: a length-delimited field. */
function bytesField(field: number, bytes: Buffer): Buffer {
  return Buffer.concat([varint((field << 3) | 2), varint(bytes.length), bytes]);
}

function varint(n: number): Buffer {
  const out: number[] = [];
  let v = n;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

/** kvs2 SetRequest and etcd PutRequest share fields 1 (key) and 2 (value). */
function keyValueMessage(index: number, valueBytes: number): Buffer {
  return Buffer.concat([bytesField(1, keyFor(index)), bytesField(2, valueFor(index, valueBytes))]);
}

/** etcd TxnRequest with `success` = one RequestOp{request_put} per key. */
function etcdTxnOfPuts(first: number, count: number, valueBytes: number): Buffer {
  const ops: Buffer[] = [];
  for (let i = first; i < first + count; i++) ops.push(bytesField(2, keyValueMessage(i, valueBytes)));
  return Buffer.concat(ops.map((requestOp) => bytesField(2, requestOp)));
}

async function loadOverGrpc(
  target: string,
  method: string,
  requests: number,
  request: (n: number) => Buffer,
  channelCredentials: ChannelCredentials = credentials.createInsecure(),
): Promise<void> {
  const clients = Array.from(
    { length: CONNECTIONS },
    () =>
      new Client(target, channelCredentials, {
        'grpc.max_send_message_length': 64 * 1024 * 1024,
        // A connection of its own for each client (grpc-js shares them by default).
        'grpc.use_local_subchannel_pool': 1,
      }),
  );
  let next = 0;
  let failure: Error | undefined;
  const worker = async (w: number): Promise<void> => {
    const client = clients[w % CONNECTIONS] as Client;
    while (failure === undefined) {
      const n = next++;
      if (n >= requests) return;
      const payload = request(n);
      await new Promise<void>((resolve) => {
        client.makeUnaryRequest(
          method,
          (b: Buffer) => b,
          (b: Buffer) => b,
          payload,
          { deadline: Date.now() + 60_000 },
          (error) => {
            if (error) failure ??= new Error(`loading ${target} ${method}: ${error.message}`);
            resolve();
          },
        );
      });
    }
  };
  try {
    await Promise.all(Array.from({ length: IN_FLIGHT }, (_, w) => worker(w)));
  } finally {
    for (const c of clients) c.close();
  }
  if (failure) throw failure;
}

export async function loadKvs2(
  target: string,
  keys: number,
  valueBytes: number,
  channelCredentials: ChannelCredentials = credentials.createInsecure(),
): Promise<LoadProgress> {
  const started = performance.now();
  await loadOverGrpc(target, '/kvs2.Kvs2/Set', keys, (n) => keyValueMessage(n, valueBytes), channelCredentials);
  return { loaded: keys, seconds: (performance.now() - started) / 1000 };
}

export async function loadEtcd(target: string, keys: number, valueBytes: number): Promise<LoadProgress> {
  const started = performance.now();
  const txns = Math.ceil(keys / ETCD_PUTS_PER_TXN);
  await loadOverGrpc(target, '/etcdserverpb.KV/Txn', txns, (n) => {
    const first = n * ETCD_PUTS_PER_TXN;
    return etcdTxnOfPuts(first, Math.min(ETCD_PUTS_PER_TXN, keys - first), valueBytes);
  });
  return { loaded: keys, seconds: (performance.now() - started) / 1000 };
}

/** RESP SET commands for every key, in chunks, for `redis-cli --pipe`. */
async function* redisSetCommands(keys: number, valueBytes: number): AsyncGenerator<Buffer> {
  const chunk: Buffer[] = [];
  for (let i = 0; i < keys; i++) {
    const key = keyFor(i);
    const value = valueFor(i, valueBytes);
    chunk.push(
      Buffer.from(`*3\r\n$3\r\nSET\r\n$${key.length}\r\n`, 'latin1'),
      key,
      Buffer.from(`\r\n$${value.length}\r\n`, 'latin1'),
      value,
      Buffer.from('\r\n', 'latin1'),
    );
    if (chunk.length >= 5 * 2000) yield Buffer.concat(chunk.splice(0));
  }
  if (chunk.length > 0) yield Buffer.concat(chunk);
}

export async function loadRedis(port: number, keys: number, valueBytes: number): Promise<LoadProgress> {
  const result = await runChecked('redis-cli', ['-h', '127.0.0.1', '-p', String(port), '--pipe'], {
    core: CLIENT_CORE,
    timeoutMs: 30 * 60_000,
    input: redisSetCommands(keys, valueBytes),
  });
  if (!/errors: 0,/.test(result.stdout)) throw new Error(`redis-cli --pipe reported errors: ${result.stdout.trim()}`);
  return { loaded: keys, seconds: result.seconds };
}
