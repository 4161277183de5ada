import { credentials, type GrpcObject, loadPackageDefinition, type ServiceClientConstructor } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { SEED_PROTO } from './paths.js';

/** What the seed's proto defines, as @grpc/proto-loader decodes it (enums as names). */
export interface SeedGetReply {
  status: 'OK' | 'NOT_FOUND';
  data: Buffer;
}
export interface SeedMultiGetReply {
  parts: Array<{ key: Buffer; status: 'OK' | 'NOT_FOUND'; data: Buffer }>;
}
export interface SeedSetReply {
  status: 'PUBLISHED';
}

type Callback<T> = (error: Error | null, reply: T) => void;
interface RawSeedClient {
  Get(request: { key: Buffer }, options: { deadline: number }, callback: Callback<SeedGetReply>): void;
  MultiGet(request: { keys: Buffer[] }, options: { deadline: number }, callback: Callback<SeedMultiGetReply>): void;
  Set(request: { key: Buffer; value: Buffer }, options: { deadline: number }, callback: Callback<SeedSetReply>): void;
  close(): void;
}

function service(path: string, includeDirs: string[], name: string[]): ServiceClientConstructor {
  const definition = loadSync(path, { keepCase: true, enums: String, defaults: true, includeDirs });
  let node: GrpcObject | ServiceClientConstructor = loadPackageDefinition(definition);
  for (const part of name) node = (node as GrpcObject)[part] as GrpcObject | ServiceClientConstructor;
  return node as ServiceClientConstructor;
}

/**
 * A client generated at run time from the seed article's proto file, unchanged, by a different protobuf
 * implementation than the server's: what "a client built from the seed's proto" means.
 */
export class SeedClient {
  readonly #raw: RawSeedClient;
  readonly #timeoutMs: number;

  constructor(address: string, timeoutMs = 10_000) {
    const Kvs2 = service(SEED_PROTO, [], ['kvs2', 'Kvs2']);
    this.#raw = new Kvs2(address, credentials.createInsecure(), {
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      'grpc.max_send_message_length': 64 * 1024 * 1024,
    }) as unknown as RawSeedClient;
    this.#timeoutMs = timeoutMs;
  }

  get(key: Buffer, timeoutMs = this.#timeoutMs): Promise<SeedGetReply> {
    return new Promise((resolve, reject) =>
      this.#raw.Get({ key }, { deadline: Date.now() + timeoutMs }, (e, r) => (e ? reject(e) : resolve(r))),
    );
  }

  multiGet(keys: Buffer[], timeoutMs = this.#timeoutMs): Promise<SeedMultiGetReply> {
    return new Promise((resolve, reject) =>
      this.#raw.MultiGet({ keys }, { deadline: Date.now() + timeoutMs }, (e, r) => (e ? reject(e) : resolve(r))),
    );
  }

  set(key: Buffer, value: Buffer, timeoutMs = this.#timeoutMs): Promise<SeedSetReply> {
    return new Promise((resolve, reject) =>
      this.#raw.Set({ key, value }, { deadline: Date.now() + timeoutMs }, (e, r) => (e ? reject(e) : resolve(r))),
    );
  }

  close(): void {
    this.#raw.close();
  }
}

export type HealthStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

interface RawHealthClient {
  Check(
    request: { service: string },
    options: { deadline: number },
    callback: Callback<{ status: HealthStatus }>,
  ): void;
  Watch(request: { service: string }): NodeJS.EventEmitter & { cancel(): void };
  close(): void;
}

/** The standard grpc.health.v1 client, from the proto that grpc-health-check ships. */
export class HealthClient {
  readonly #raw: RawHealthClient;

  constructor(address: string) {
    const Health = service(healthProtoPath, [], ['grpc', 'health', 'v1', 'Health']);
    this.#raw = new Health(address, credentials.createInsecure()) as unknown as RawHealthClient;
  }

  check(serviceName: string): Promise<HealthStatus> {
    return new Promise((resolve, reject) =>
      this.#raw.Check({ service: serviceName }, { deadline: Date.now() + 5000 }, (e, r) =>
        e ? reject(e) : resolve(r.status),
      ),
    );
  }

  /** Opens a Watch stream; statuses arrive in `statuses`, `ended` settles when the server ends it. */
  watch(serviceName: string): { statuses: HealthStatus[]; ended: Promise<unknown>; cancel: () => void } {
    const call = this.#raw.Watch({ service: serviceName });
    const statuses: HealthStatus[] = [];
    call.on('data', (message: { status: HealthStatus }) => statuses.push(message.status));
    const ended = new Promise((resolve) => {
      call.on('end', () => resolve('end'));
      call.on('error', (error: Error) => resolve(error));
    });
    return { statuses, ended, cancel: () => call.cancel() };
  }

  close(): void {
    this.#raw.close();
  }
}

/** Polls until `check` is true or the time runs out. */
export async function eventually(
  check: () => Promise<boolean> | boolean,
  timeoutMs = 15_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
