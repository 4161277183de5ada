import { randomBytes, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createServer as createTlsServer } from 'node:tls';
import { Kvs2Error } from '../errors.js';
import type { ServerTls } from './server-tls.js';

/** Bytes of a ticket: 256 random bits, never guessed within the few seconds one is good for. */
export const TICKET_BYTES = 32;
/** How long a ticket waits for its connection, and a connection for its ticket, before the transfer fails. */
const TICKET_WAIT_MS = 15_000;
/** Connections a listener holds at once while they send their tickets; more are dropped. */
const MAX_PENDING_CONNECTIONS = 8;

/** Where a node serves direct transfers: the host its gRPC server listens on, with its TLS. */
export interface DirectTransferEndpoint {
  readonly host: string;
  readonly tls: ServerTls | null;
}

/**
 * One direct transfer (docs/snapshot-format.md, "Direct transfer"): the bytes of a store image over a plain
 * socket (TLS when the node serves TLS) beside the Snapshot call that asked for them, because a gRPC stream
 * moves them several times slower (HTTP/2 framing and a copy of each message on both ends, on the event loop).
 * The call has already passed the auth check; the listener, on an ephemeral port of the gRPC host, admits
 * only the connection that sends this call's ticket first (random, compared in constant time), then closes.
 * A connection that sends anything else is dropped without a byte. The transfer owns the listener and the
 * connections, and closes them however it ends: sent, failed, timed out, or aborted by the call's signal.
 */
export class DirectTransfer {
  readonly port: number;
  readonly ticket: Buffer;
  readonly #listener: NetServer;
  readonly #sockets: Set<Socket>;
  readonly #admitted: Promise<Socket>;

  private constructor(
    listener: NetServer,
    sockets: Set<Socket>,
    port: number,
    ticket: Buffer,
    admitted: Promise<Socket>,
  ) {
    this.#listener = listener;
    this.#sockets = sockets;
    this.port = port;
    this.ticket = ticket;
    this.#admitted = admitted;
  }

  /** Listens on an ephemeral port of the endpoint's host; send() then waits for the ticket's connection. */
  static async open(endpoint: DirectTransferEndpoint, signal: AbortSignal): Promise<DirectTransfer> {
    const ticket = randomBytes(TICKET_BYTES);
    let admit!: (socket: Socket) => void;
    const admitted = new Promise<Socket>((resolve) => {
      admit = resolve;
    });
    let used = false;
    // Every connection, a TLS one from before its handshake: close() ends them all.
    const sockets = new Set<Socket>();
    const onConnection = (socket: Socket): void => {
      socket.on('error', () => socket.destroy());
      socket.setTimeout(TICKET_WAIT_MS, () => socket.destroy());
      readTicket(socket).then(
        (sent) => {
          if (sent !== null && !used && timingSafeEqual(sent, ticket)) {
            used = true;
            socket.setTimeout(0);
            admit(socket);
          } else {
            socket.destroy();
          }
        },
        () => socket.destroy(),
      );
    };
    const tls = endpoint.tls;
    const listener =
      tls === null
        ? createNetServer(onConnection)
        : createTlsServer({ ...tls.secureContextOptions(), handshakeTimeout: TICKET_WAIT_MS }, onConnection);
    listener.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
    listener.maxConnections = MAX_PENDING_CONNECTIONS;
    try {
      listener.listen({ host: endpoint.host, port: 0 });
      await once(listener, 'listening', { signal });
      const address = listener.address();
      if (address === null || typeof address === 'string') {
        throw new Kvs2Error('INCONSISTENT_STATE', 'a direct transfer listener has no port');
      }
      return new DirectTransfer(listener, sockets, address.port, ticket, admitted);
    } catch (error) {
      listener.close();
      throw error;
    }
  }

  /**
   * Waits for the ticket's connection (at most TICKET_WAIT_MS), closes the listener, and writes `bytes` to it
   * at the pace the receiver reads; resolves once all were handed to the kernel and the socket was ended.
   */
  async send(bytes: AsyncIterable<Buffer>, signal: AbortSignal): Promise<void> {
    const waiting = AbortSignal.any([signal, AbortSignal.timeout(TICKET_WAIT_MS)]);
    const socket = await new Promise<Socket>((resolve, reject) => {
      const onAbort = (): void => {
        if (signal.aborted) reject(signal.reason);
        else {
          reject(
            new Kvs2Error(
              'DEADLINE_EXCEEDED',
              `no client fetched the store image within ${TICKET_WAIT_MS / 1000} s of being given its ticket`,
            ),
          );
        }
      };
      if (waiting.aborted) onAbort();
      waiting.addEventListener('abort', onAbort, { once: true });
      void this.#admitted.then((admitted) => {
        waiting.removeEventListener('abort', onAbort);
        resolve(admitted);
      });
    });
    // One transfer per ticket: no one else gets in.
    this.#listener.close();
    await pipeline(Readable.from(bytes, { objectMode: false }), socket, { signal });
  }

  /** Closes the listener and every connection. Safe at any time, and more than once. */
  close(): void {
    this.#listener.close();
    for (const socket of this.#sockets) socket.destroy();
  }
}

/** The first TICKET_BYTES bytes a connection sends, or null when it sends more or fewer before pausing. */
function readTicket(socket: Socket): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let length = 0;
    const onData = (data: Buffer): void => {
      parts.push(data);
      length += data.length;
      if (length < TICKET_BYTES) return;
      done();
      // A client sends its ticket and then only reads: more bytes mean it is not one of ours.
      resolve(length === TICKET_BYTES ? Buffer.concat(parts, length) : null);
    };
    const onEnd = (): void => {
      done();
      resolve(null);
    };
    const onError = (error: Error): void => {
      done();
      reject(error);
    };
    const done = (): void => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
      socket.pause();
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', onError);
  });
}
