import { randomBytes, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { Kvs2Error } from '../errors.js';
import { StallWatch } from '../stall-watch.js';
import type { ServerTls } from './server-tls.js';

/** Bytes of a ticket: 256 random bits, never guessed within the few seconds one is good for. */
export const TICKET_BYTES = 32;
/** How long a ticket waits for its connection, and a connection for its ticket, before the transfer fails. */
const TICKET_WAIT_MS = 15_000;
/** Connections a listener holds at once while they send their tickets; more are dropped. */
const MAX_PENDING_CONNECTIONS = 8;
/**
 * Bytes per socket write. Each write's completion (its bytes in the kernel) is what shows the receiver still
 * takes bytes, so a receiver is judged by whether it takes this much within the stall limit, not a whole
 * (1 MiB) chunk of the image.
 */
const WRITE_BYTES = 64 * 1024;

/** The send-side progress limit of a transfer, and who is told (once) that it was hit. */
export interface DirectSendStall {
  readonly limitMs: number;
  /** The receiver's address and the bytes it was sent; the transfer is ended as this returns. */
  readonly onStall: (peer: string, bytesSent: number) => void;
}

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
   * A receiver that takes nothing for `stall.limitMs` while bytes wait for it has its socket destroyed, and
   * this rejects with DEADLINE_EXCEEDED.
   */
  async send(bytes: AsyncIterable<Buffer>, signal: AbortSignal, stall: DirectSendStall): Promise<void> {
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
    await writeAll(socket, bytes, signal, stall);
  }

  /** Closes the listener and every connection. Safe at any time, and more than once. */
  close(): void {
    this.#listener.close();
    for (const socket of this.#sockets) socket.destroy();
  }
}

/**
 * Writes every chunk to the socket in WRITE_BYTES pieces, waiting for 'drain' when it asks, then ends it and
 * waits until it finished. While written bytes wait for the kernel to take them, a StallWatch runs; each
 * completed write renews it. A stall destroys the socket, which ends every wait here.
 */
async function writeAll(
  socket: Socket,
  chunks: AsyncIterable<Buffer>,
  signal: AbortSignal,
  stall: DirectSendStall,
): Promise<void> {
  const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
  let pending = 0;
  let sent = 0;
  const watch = new StallWatch(stall.limitMs, () => {
    stall.onStall(peer, sent);
    socket.destroy(
      new Kvs2Error(
        'DEADLINE_EXCEEDED',
        `the receiver ${peer} took nothing for ${stall.limitMs} ms after ${sent} bytes`,
      ),
    );
  });
  const onAbort = (): void => {
    socket.destroy(signal.reason instanceof Error ? signal.reason : new Error('the transfer was aborted'));
  };
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    if (signal.aborted) onAbort();
    for await (const chunk of chunks) {
      for (let at = 0; at < chunk.length; at += WRITE_BYTES) {
        const piece = chunk.subarray(at, at + WRITE_BYTES);
        if (pending === 0) watch.arm();
        pending++;
        socket.write(piece, (error) => {
          pending--;
          if (error) return;
          sent += piece.length;
          if (pending > 0) watch.arm();
          else watch.disarm();
        });
        if (socket.writableNeedDrain || socket.destroyed) await settled(socket, 'drain');
      }
    }
    socket.end();
    await settled(socket, 'finish');
  } finally {
    watch.close();
    signal.removeEventListener('abort', onAbort);
  }
}

/**
 * Resolves on the socket's `event`; rejects with the socket's error when it is destroyed first (for any
 * reason: the stall, the abort, the receiver gone).
 */
function settled(socket: Socket, event: 'drain' | 'finish'): Promise<void> {
  return new Promise((resolve, reject) => {
    const failed = (): void => {
      done();
      reject(socket.errored ?? new Error('the connection closed before the transfer ended'));
    };
    const ok = (): void => {
      done();
      resolve();
    };
    const done = (): void => {
      socket.off(event, ok);
      socket.off('close', failed);
      socket.off('error', failed);
    };
    if (socket.destroyed) {
      failed();
      return;
    }
    socket.once(event, ok);
    socket.once('close', failed);
    socket.once('error', failed);
  });
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
