import {
  Metadata,
  Server,
  type ServerCredentials,
  type ServerUnaryCall,
  type ServerWritableStream,
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
  storeLeafFill: 0.5,
  lastCaughtUpUnixMs: 1_700_000_000_000,
  token: Buffer.from([1, 2, 3]),
  uptimeSeconds: 12.5,
};

const REPLIES: Readonly<Record<UnaryMethod, unknown>> = {
  get: { status: ReadStatus.OK, data: Buffer.from('value'), token: EMPTY, version: 7 },
  multiGet: { parts: [], token: EMPTY },
  scan: { items: [], continuation: EMPTY, token: EMPTY },
  status: STAND_IN_STATUS,
  set: { status: 0, token: EMPTY, version: 0 },
  delete: { status: 0, token: EMPTY, version: 0 },
  write: { results: [], token: EMPTY, status: 0 },
};

/** What the stand-in's Snapshot call sends: these chunks, then the end (OK) or this failure. */
export interface ScriptedSnapshot {
  readonly chunks: readonly Buffer[];
  readonly failure?: { readonly code: status; readonly kvs2Code: string };
}

/**
 * A gRPC server of the Kvs2 service (the real wire, grpc-js on both ends) whose answers a test scripts:
 * each unary method fails the next `failures` calls with a chosen status and kvs2 code, then answers a
 * fixed reply; Snapshot streams what `snapshotScript` says. It counts the calls that reached it, which is
 * what a retry test must see.
 */
export class StandInNode {
  readonly calls = new Map<UnaryMethod | 'snapshot', number>();
  /** What the next Snapshot calls stream; none: they fail UNIMPLEMENTED. */
  snapshotScript: ScriptedSnapshot | undefined;
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
    implementation.snapshot = (call: ServerWritableStream<unknown, unknown>) => void node.#stream(call);
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

  callsOf(method: UnaryMethod | 'snapshot'): number {
    return this.calls.get(method) ?? 0;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.tryShutdown(() => resolve()));
  }

  /** Each chunk once the one before was taken (the write callback), then the scripted end. */
  async #stream(call: ServerWritableStream<unknown, unknown>): Promise<void> {
    this.calls.set('snapshot', this.callsOf('snapshot') + 1);
    const script = this.snapshotScript;
    if (script === undefined) {
      call.emit('error', { code: status.UNIMPLEMENTED, details: 'no snapshot scripted' });
      return;
    }
    for (const data of script.chunks) {
      if (call.cancelled) return;
      await new Promise<void>((resolve) => call.write({ data }, () => resolve()));
    }
    if (script.failure === undefined) {
      call.end();
      return;
    }
    const metadata = new Metadata();
    metadata.set('kvs2-error-code', script.failure.kvs2Code);
    call.emit('error', { code: script.failure.code, details: 'stand-in snapshot failure', metadata });
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
