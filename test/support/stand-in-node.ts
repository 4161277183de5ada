import {
  Metadata,
  Server,
  type ServerCredentials,
  type ServerUnaryCall,
  type sendUnaryData,
  status,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { Kvs2Service, NodeState, ReadStatus, type StatusReply } from '../../src/gen/kvs2.js';

export type UnaryMethod = 'get' | 'multiGet' | 'scan' | 'status' | 'set' | 'delete' | 'write';

const EMPTY = Buffer.alloc(0);

export const STAND_IN_STATUS: StatusReply = {
  state: NodeState.NODE_STATE_SERVING,
  version: '9.9.9',
  logKind: 'embedded',
  logDescription: '/stand-in',
  partitions: [{ partition: 0, appliedOffset: 3, endOffset: 3, lagRecords: 0 }],
  keys: 2,
  storeBytes: 4096,
  lastCaughtUpUnixMs: 1_700_000_000_000,
  token: Buffer.from([1, 2, 3]),
  uptimeSeconds: 12.5,
};

const REPLIES: Readonly<Record<UnaryMethod, unknown>> = {
  get: { status: ReadStatus.OK, data: Buffer.from('value'), token: EMPTY },
  multiGet: { parts: [], token: EMPTY },
  scan: { items: [], continuation: EMPTY, token: EMPTY },
  status: STAND_IN_STATUS,
  set: { status: 0, token: EMPTY },
  delete: { status: 0, token: EMPTY },
  write: { results: [], token: EMPTY },
};

/**
 * A gRPC server of the Kvs2 service (the real wire, grpc-js on both ends) whose answers a test scripts:
 * each unary method fails the next `failures` calls with a chosen status and kvs2 code, then answers a
 * fixed reply. It counts the calls that reached it, which is what a retry test must see.
 */
export class StandInNode {
  readonly calls = new Map<UnaryMethod, number>();
  readonly #failures = new Map<UnaryMethod, { left: number; code: status; kvs2Code: string }>();

  private constructor(
    readonly server: Server,
    readonly port: number,
  ) {}

  static async start(credentials: ServerCredentials): Promise<StandInNode> {
    const server = new Server();
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', credentials, (error, bound) => (error ? reject(error) : resolve(bound))),
    );
    const node = new StandInNode(server, port);
    const implementation: UntypedServiceImplementation = {};
    for (const method of Object.keys(REPLIES) as UnaryMethod[]) {
      implementation[method] = (_call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) =>
        node.#answer(method, callback);
    }
    server.addService(Kvs2Service, implementation);
    return node;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** The next `count` calls of `method` fail with `code`, the kvs2 code in the trailer as a real node sends it. */
  fail(method: UnaryMethod, count: number, code = status.UNAVAILABLE, kvs2Code = 'LOG_UNAVAILABLE'): void {
    this.#failures.set(method, { left: count, code, kvs2Code });
  }

  callsOf(method: UnaryMethod): number {
    return this.calls.get(method) ?? 0;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.tryShutdown(() => resolve()));
  }

  #answer(method: UnaryMethod, callback: sendUnaryData<unknown>): void {
    this.calls.set(method, this.callsOf(method) + 1);
    const failure = this.#failures.get(method);
    if (failure !== undefined && failure.left > 0) {
      failure.left--;
      const metadata = new Metadata();
      metadata.set('kvs2-error-code', failure.kvs2Code);
      callback({ code: failure.code, details: `stand-in ${method} failure`, metadata });
      return;
    }
    callback(null, REPLIES[method]);
  }
}
