import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { NodeHealthView } from '../service/node-health.js';

/** What /metrics serves: a prom-client registry, or several summed (a node with serving workers). */
export type MetricsSource = Pick<Registry, 'metrics' | 'contentType'>;

export interface MetricsListenerOptions {
  readonly registry: MetricsSource;
  readonly health: NodeHealthView;
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
}

/** How long close() lets a scrape in flight finish before cutting its connection. */
const CLOSE_GRACE_MS = 1_000;

/**
 * The node's HTTP listener for operators, apart from the gRPC port: Prometheus text at `/metrics`, and the
 * probes `/livez` (200 while the process can serve) and `/readyz` (200 only when ready; the body names the
 * state either way), as etcd and Kubernetes components serve them. Other paths are 404; methods other than
 * GET and HEAD are 405.
 *
 * Made before it listens, so that its owner can register close() where it belongs in the close order.
 */
export class MetricsListener {
  readonly #server: Server;
  readonly #registry: MetricsSource;
  readonly #health: NodeHealthView;
  readonly #host: string;
  #port: number;

  constructor({ registry, health, host, port }: MetricsListenerOptions) {
    this.#registry = registry;
    this.#health = health;
    this.#host = host;
    this.#port = port;
    this.#server = createServer((request, response) => void this.#answer(request, response));
  }

  /** Where it listens, once listening: `http://host:port`. */
  get url(): string {
    return `http://${this.#host.includes(':') ? `[${this.#host}]` : this.#host}:${this.#port}`;
  }

  /** Binds; resolves with the bound port (useful with port 0). */
  async listen(): Promise<number> {
    const [host, port] = [this.#host, this.#port];
    // once() rejects if 'error' comes first: the address is taken or cannot be bound.
    const listening = once(this.#server, 'listening');
    this.#server.listen(port, host);
    try {
      await listening;
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new Error(`cannot listen for metrics on ${host}:${port}: ${reason}`, { cause: error });
    }
    this.#port = (this.#server.address() as AddressInfo).port;
    return this.#port;
  }

  /** Stops listening; scrapes in flight get a moment to finish. Safe before listen() and more than once. */
  async close(): Promise<void> {
    if (!this.#server.listening) return;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeIdleConnections();
    const timer = setTimeout(() => this.#server.closeAllConnections(), CLOSE_GRACE_MS);
    await closed;
    clearTimeout(timer);
  }

  async #answer(request: IncomingMessage, response: ServerResponse): Promise<void> {
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.setHeader('Allow', 'GET, HEAD');
      send(response, 405, 'method not allowed\n');
      return;
    }
    const path = (request.url ?? '/').split('?', 1)[0];
    switch (path) {
      case '/metrics':
        try {
          const text = await this.#registry.metrics();
          send(response, 200, text, this.#registry.contentType);
        } catch (error) {
          send(response, 500, `cannot collect metrics: ${error instanceof Error ? error.message : String(error)}\n`);
        }
        return;
      case '/livez':
        if (this.#health.live()) send(response, 200, 'ok\n');
        else send(response, 503, `not live: ${this.#health.state()}\n`);
        return;
      case '/readyz': {
        const state = this.#health.state();
        send(response, this.#health.ready() ? 200 : 503, `${state}\n`);
        return;
      }
      default:
        send(response, 404, 'not found: try /metrics, /livez or /readyz\n');
    }
  }
}

/** Node leaves the body out of answers to HEAD by itself. */
function send(response: ServerResponse, code: number, body: string, contentType = 'text/plain; charset=utf-8'): void {
  response.writeHead(code, {
    'Content-Type': contentType,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
  });
  response.end(body);
}
