import type { Server, ServerWritableStream, ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { NodeHealthView } from '../service/node-health.js';

/** SERVING whenever the process can serve: what a liveness probe asks (restart me if not). */
export const LIVENESS_SERVICE = 'liveness';
/** SERVING only when the node is ready: the server as a whole ("") and kvs2 itself. */
const READINESS_SERVICES = ['', 'kvs2.Kvs2'] as const;

type ServingStatus = 'SERVING' | 'NOT_SERVING';

/**
 * The standard grpc.health.v1.Health service (Check and Watch), from grpc-health-check, following the
 * node's health: liveness and readiness under their own names. We add one thing: remembering open Watch
 * streams, so that shutdown can end them after announcing NOT_SERVING instead of waiting for them until
 * its deadline.
 */
export class HealthService {
  readonly #node: NodeHealthView;
  readonly #health: HealthImplementation;
  readonly #watches = new Set<ServerWritableStream<unknown, unknown>>();
  /** As last set: grpc-health-check tells watchers of every setStatus, and Watch sends only changes. */
  readonly #statuses = new Map<string, ServingStatus>();
  readonly #unsubscribe: () => void;

  constructor(node: NodeHealthView) {
    this.#node = node;
    this.#health = new HealthImplementation();
    this.#unsubscribe = node.onChange(() => this.#follow());
    this.#follow();
  }

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

  /** Announces NOT_SERVING under every name, for good: the server is going away whatever the node says. */
  stopServing(): void {
    this.#unsubscribe();
    this.#set(LIVENESS_SERVICE, 'NOT_SERVING');
    for (const service of READINESS_SERVICES) this.#set(service, 'NOT_SERVING');
  }

  /** Ends every open Watch stream with OK; watchers have been told NOT_SERVING before. */
  endWatches(): void {
    for (const call of this.#watches) call.end();
    this.#watches.clear();
  }

  #follow(): void {
    this.#set(LIVENESS_SERVICE, this.#node.live() ? 'SERVING' : 'NOT_SERVING');
    const ready: ServingStatus = this.#node.ready() ? 'SERVING' : 'NOT_SERVING';
    for (const service of READINESS_SERVICES) this.#set(service, ready);
  }

  #set(service: string, status: ServingStatus): void {
    if (this.#statuses.get(service) === status) return;
    this.#statuses.set(service, status);
    this.#health.setStatus(service, status);
  }
}
