import { credentials, type GrpcObject, loadPackageDefinition, type ServiceClientConstructor } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath } from 'grpc-health-check';

interface RawHealthClient {
  Check(
    request: { service: string },
    options: { deadline: number },
    callback: (error: Error | null, reply: { status: string }) => void,
  ): void;
  close(): void;
}

let healthService: ServiceClientConstructor | undefined;

function loadHealthService(): ServiceClientConstructor {
  if (healthService !== undefined) return healthService;
  const definition = loadSync(protoPath, { keepCase: true, enums: String, defaults: true });
  let node: GrpcObject | ServiceClientConstructor = loadPackageDefinition(definition);
  for (const part of ['grpc', 'health', 'v1', 'Health']) {
    node = (node as GrpcObject)[part] as GrpcObject | ServiceClientConstructor;
  }
  healthService = node as ServiceClientConstructor;
  return healthService;
}

/** grpc.health.v1 Check against one node; the status is the enum's name, e.g. `SERVING` or `NOT_SERVING`. */
export class HealthClient {
  readonly #raw: RawHealthClient;

  constructor(address: string) {
    const Health = loadHealthService();
    this.#raw = new Health(address, credentials.createInsecure()) as unknown as RawHealthClient;
  }

  check(service: string, timeoutMs = 5000): Promise<string> {
    return new Promise((resolve, reject) =>
      this.#raw.Check({ service }, { deadline: Date.now() + timeoutMs }, (error, reply) =>
        error ? reject(error) : resolve(reply.status),
      ),
    );
  }

  close(): void {
    this.#raw.close();
  }
}
