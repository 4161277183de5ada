import { createServer, type Server as NetServer } from 'node:net';
import { type ChannelOptions, Server, ServerCredentials } from '@grpc/grpc-js';
import type { Authorizer } from '../auth/authorizer.js';
import type { Limits } from '../config/config.js';
import { Kvs2Error } from '../errors.js';
import type { KvService } from '../service/kv-service.js';
import type { StatusSource } from '../service/node-status.js';
import { callGuard } from './call-auth.js';
import { type GrpcCallObserver, NO_CALL_OBSERVER } from './call-observer.js';
import type { HealthService } from './health.js';
import { strictKvs2Definition } from './kvs2-definition.js';
import { kvs2Handlers } from './kvs2-handlers.js';
import { addReflection } from './reflection.js';
import { DEFAULT_SEND_STALL, type SendStallOptions } from './send-stall.js';
import type { ServerTls } from './server-tls.js';

export interface GrpcApiOptions {
  readonly service: KvService;
  /** What the Status call answers. */
  readonly status: StatusSource;
  /** What the health service reports; its owner says when the node serves. */
  readonly health: HealthService;
  readonly limits: Limits;
  readonly maxRequestBytes: number;
  readonly requestTimeoutMs: number;
  /** Sees every kvs2.Kvs2 call begin and end (metrics); by default nothing does. */
  readonly calls?: GrpcCallObserver;
  /** The server's certificates: the server speaks TLS only; absent or null, plaintext. */
  readonly tls?: ServerTls | null;
  /** Tokens and permissions (--auth-file): kvs2.Kvs2 calls must be allowed; absent or null, all are. */
  readonly auth?: Authorizer | null;
  /**
   * How long a receiver of a snapshot or store image may take nothing before the node ends the transfer and
   * removes its copy, and who is told (the node logs it); by default 60 s, told no one.
   */
  readonly sendStall?: SendStallOptions;
}

/** Room for field tags, lengths and framing around the keys and values of a reply. */
const MESSAGE_OVERHEAD_BYTES = 64 * 1024;

/** What the transport must allow: requests up to --max-request-bytes, replies up to --max-reply-bytes. */
export interface TransportLimits {
  readonly maxRequestBytes: number;
  readonly maxReplyBytes: number;
}

/**
 * The grpc-js server options for these limits (the benchmark's no-op server uses them too, so that it is
 * the ceiling of exactly this stack).
 */
export function grpcServerOptions(limits: TransportLimits): ChannelOptions {
  return {
    // grpc-js refuses a bigger request from its length prefix, before buffering it.
    'grpc.max_receive_message_length': limits.maxRequestBytes,
    'grpc.max_send_message_length': Math.min(2 * limits.maxReplyBytes + MESSAGE_OVERHEAD_BYTES, 2 ** 31 - 1),
    // Channelz (grpc-js's call statistics, which kvs2 does not serve) costs a closure, timestamps and
    // counters per call.
    'grpc.enable_channelz': 0,
  };
}

/**
 * The gRPC face of a node: kvs2.Kvs2, grpc.health.v1.Health and server reflection on one server.
 * Owns the server; `shutdown` stops it.
 */
export class GrpcApi {
  readonly #server: Server;
  readonly #health: HealthService;
  readonly #tls: ServerTls | null;
  readonly #openWatches = new Set<(reason: Kvs2Error) => void>();
  readonly #openSnapshots = new Set<(reason: Kvs2Error) => void>();
  readonly #openCalls = new Set<(reason: Kvs2Error) => void>();
  /** The listener of listenShared(), which grpc-js does not own. */
  #sharedListener: NetServer | null = null;
  /** The host listen() bound: direct transfers of store images listen there too. */
  #listenHost: string | null = null;

  constructor(options: GrpcApiOptions) {
    this.#health = options.health;
    this.#tls = options.tls ?? null;
    const auth = options.auth ?? null;
    this.#server = new Server(
      grpcServerOptions({ maxRequestBytes: options.maxRequestBytes, maxReplyBytes: options.limits.maxReplyBytes }),
    );
    this.#server.addService(
      strictKvs2Definition(),
      kvs2Handlers({
        service: options.service,
        status: options.status,
        requestTimeoutMs: options.requestTimeoutMs,
        openCalls: this.#openCalls,
        openWatches: this.#openWatches,
        openSnapshots: this.#openSnapshots,
        calls: options.calls ?? NO_CALL_OBSERVER,
        // Health and reflection stay open: probes and tools need no token.
        guard: auth ? callGuard(auth, { certificates: options.tls?.mutual ?? false }) : null,
        guardReloads: auth ? (listener) => auth.onReload(listener) : null,
        directTransfer: () => (this.#listenHost === null ? null : { host: this.#listenHost, tls: this.#tls }),
        sendStall: options.sendStall ?? DEFAULT_SEND_STALL,
      }),
    );
    this.#health.addTo(this.#server);
    addReflection(this.#server);
  }

  /** Watches open now (the kvs2_watches_open gauge). */
  get openWatches(): number {
    return this.#openWatches.size;
  }

  /** Snapshot streams open now. */
  get openSnapshots(): number {
    return this.#openSnapshots.size;
  }

  /** Binds and starts serving; resolves with the bound port (useful with port 0). */
  listen(host: string, port: number): Promise<number> {
    const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    this.#listenHost = host;
    return new Promise((resolve, reject) => {
      const credentials = this.#tls === null ? ServerCredentials.createInsecure() : this.#tls.credentials();
      this.#server.bindAsync(address, credentials, (error, boundPort) => {
        if (error) reject(new Error(`cannot listen on ${address}: ${error.message}`, { cause: error }));
        else resolve(boundPort);
      });
    });
  }

  /**
   * Binds with SO_REUSEPORT, so that several servers (the node's serving workers, one per thread) listen
   * on one port and the kernel spreads connections among them; grpc-js cannot bind that way, so connections
   * are accepted here and handed to it. Resolves with the bound port (port 0: a free one, which the other
   * servers then bind).
   */
  listenShared(host: string, port: number, onConnection?: (remote: string) => void): Promise<number> {
    const credentials = this.#tls === null ? ServerCredentials.createInsecure() : this.#tls.credentials();
    const injector = this.#server.createConnectionInjector(credentials);
    this.#listenHost = host;
    const listener = createServer((socket) => {
      onConnection?.(`${socket.remoteAddress}:${socket.remotePort}`);
      injector.injectConnection(socket);
    });
    this.#sharedListener = listener;
    return new Promise((resolve, reject) => {
      listener.once('error', (error) =>
        reject(new Error(`cannot listen on ${host}:${port}: ${error.message}`, { cause: error })),
      );
      listener.listen({ host, port, reusePort: true }, () => {
        const address = listener.address();
        resolve(typeof address === 'object' && address !== null ? address.port : port);
      });
    });
  }

  /**
   * Announces NOT_SERVING, stops accepting calls and waits up to `graceMs` for calls in flight, then
   * cancels whatever is left. Resolves with whether everything finished within the grace period.
   */
  async shutdown(graceMs: number): Promise<boolean> {
    this.#sharedListener?.close();
    this.#health.stopServing();
    this.#health.endWatches();
    const shuttingDown = new Kvs2Error(
      'SHUTTING_DOWN',
      'the node is shutting down; resume the watch from its last token',
    );
    for (const end of [...this.#openWatches]) end(shuttingDown);
    // A snapshot stream can last minutes: it is ended too (its client gets UNAVAILABLE), so
    // that shutdown waits neither for it nor for the read transaction it holds.
    const snapshotEnded = new Kvs2Error(
      'SHUTTING_DOWN',
      'the node is shutting down; take the snapshot again from this node later, or from another one',
    );
    for (const end of [...this.#openSnapshots]) end(snapshotEnded);
    const graceful = new Promise<boolean>((resolve) => this.#server.tryShutdown(() => resolve(true)));
    if (await settlesWithin(graceful, graceMs)) return true;
    // Calls still waiting get a status of their own: a connection torn down under them would reach their
    // clients as a stream ended without one (INTERNAL). Only then are the connections closed.
    const tooLate = new Kvs2Error(
      'SHUTTING_DOWN',
      'the node shut down before the call finished; it may or may not have taken effect',
    );
    for (const end of [...this.#openCalls]) end(tooLate);
    await settlesWithin(graceful, FLUSH_ANSWERS_MS);
    this.#server.forceShutdown();
    return false;
  }
}

/** How long answers given at the end of the grace period get to reach their clients. */
const FLUSH_ANSWERS_MS = 250;

/** Whether `work` settles within `ms`. */
async function settlesWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  const settled = await Promise.race([work.then(() => true), timedOut]);
  clearTimeout(timer);
  return settled;
}
