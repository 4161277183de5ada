import type { Server, ServerWritableStream, ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';

/** The services whose health we report: the server as a whole ("") and kvs2 itself. */
const SERVICES = ['', 'kvs2.Kvs2'] as const;

/**
 * The standard grpc.health.v1.Health service (Check and Watch), from grpc-health-check. We only add one
 * thing: remembering open Watch streams, so that shutdown can end them after announcing NOT_SERVING
 * instead of waiting for them until its deadline.
 */
export class HealthService {
  readonly #health = new HealthImplementation(Object.fromEntries(SERVICES.map((s) => [s, 'NOT_SERVING'])));
  readonly #watches = new Set<ServerWritableStream<unknown, unknown>>();

  addTo(server: Server): void {
    this.#health.addToServer({
      addService: (service: ServiceDefinition, implementation: UntypedServiceImplementation) => {
        const watch = implementation.watch as ((call: ServerWritableStream<unknown, unknown>) => void) | undefined;
        if (watch === undefined) throw new Error('grpc-health-check no longer provides a watch handler');
        server.addService(service, {
          ...implementation,
          watch: (call: ServerWritableStream<unknown, unknown>) => {
            this.#watches.add(call);
            call.once('cancelled', () => this.#watches.delete(call));
            watch(call);
          },
        });
      },
    });
  }

  setServing(serving: boolean): void {
    for (const service of SERVICES) this.#health.setStatus(service, serving ? 'SERVING' : 'NOT_SERVING');
  }

  /** Ends every open Watch stream with OK; watchers have been told NOT_SERVING before. */
  endWatches(): void {
    for (const call of this.#watches) call.end();
    this.#watches.clear();
  }
}
