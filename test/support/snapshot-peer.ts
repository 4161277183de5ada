import { randomBytes } from 'node:crypto';
import { type AddressInfo, createServer, type Server as NetServer, type Socket } from 'node:net';
import { Server, ServerCredentials, type ServerWritableStream, status } from '@grpc/grpc-js';

/** A SnapshotChunk on the wire: field 1 (`data`), length-delimited. */
function encodeChunk(data: Buffer): Buffer {
  const length: number[] = [];
  let n = data.length;
  while (n >= 0x80) {
    length.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  length.push(n);
  return Buffer.concat([Buffer.from([0x0a, ...length]), data]);
}

/** A varint, as protobuf writes one. */
function varint(n: number): number[] {
  const bytes: number[] = [];
  while (n >= 0x80) {
    bytes.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  bytes.push(n);
  return bytes;
}

/** The SnapshotChunk that hands out a direct transfer: field 2, a DirectTransfer { port = 1, ticket = 2 }. */
function encodeDirectChunk(port: number, ticket: Buffer): Buffer {
  const transfer = Buffer.concat([Buffer.from([0x08, ...varint(port), 0x12, ticket.length]), ticket]);
  return Buffer.concat([Buffer.from([0x12, ...varint(transfer.length)]), transfer]);
}

/** Whether a SnapshotRequest's bytes ask for a direct transfer (field 3, true). */
function asksDirect(request: Buffer): boolean {
  return request.includes(Buffer.from([0x18, 0x01]));
}

export interface SnapshotPeerOptions {
  /** Stop after sending this many bytes of the snapshot and fail the stream UNAVAILABLE, as a peer dying mid-way. */
  readonly cutAfterBytes?: number;
  /**
   * Send this many bytes of the snapshot (0: none), then nothing more, keeping the call (and a direct
   * transfer's socket) open: a peer hung mid-image, or one that never gets to its first byte.
   */
  readonly stallAfterBytes?: number;
  /** Bytes per chunk (default 16 KiB). */
  readonly chunkBytes?: number;
  /**
   * To a call that asks for a direct transfer: 'serve' sends the bytes over one (cut as `cutAfterBytes`
   * says, the socket then destroyed and the call failed UNAVAILABLE); 'unreachable' hands out a port nothing
   * listens on and then fails the call. Without it, every call is streamed, as a peer before direct transfers.
   */
  readonly direct?: 'serve' | 'unreachable';
}

/**
 * A peer whose only RPC is kvs2.Kvs2/Snapshot, answering with bytes a test chose (a snapshot file a real
 * node wrote, whole or cut short), over the real gRPC wire: what a node bootstrapping from peers meets when
 * a peer is stale, of another topic, or dies mid-stream.
 */
export class SnapshotPeer {
  readonly address: string;
  /** How many Snapshot calls it answered. */
  calls = 0;
  readonly #server: Server;
  readonly #held: Array<() => void>;

  private constructor(server: Server, port: number, held: Array<() => void>) {
    this.#server = server;
    this.#held = held;
    this.address = `127.0.0.1:${port}`;
  }

  static async start(snapshot: Buffer, options: SnapshotPeerOptions = {}): Promise<SnapshotPeer> {
    const server = new Server();
    const chunkBytes = options.chunkBytes ?? 16 * 1024;
    const stall = options.stallAfterBytes !== undefined;
    const end = Math.min(snapshot.length, options.cutAfterBytes ?? options.stallAfterBytes ?? snapshot.length);
    let peer: SnapshotPeer | undefined;
    // Stalled calls and sockets, ended by close().
    const held: Array<() => void> = [];
    server.addService(
      {
        snapshot: {
          path: '/kvs2.Kvs2/Snapshot',
          requestStream: false,
          responseStream: true,
          requestSerialize: (value: Buffer) => value,
          requestDeserialize: (bytes: Buffer) => bytes,
          responseSerialize: (value: Buffer) => value,
          responseDeserialize: (bytes: Buffer) => bytes,
        },
      },
      {
        snapshot: (call: ServerWritableStream<Buffer, Buffer>) => {
          if (peer !== undefined) peer.calls++;
          if (options.direct !== undefined && asksDirect(call.request)) {
            const ending = stall ? 'stall' : end < snapshot.length ? 'cut' : 'end';
            void transferDirectly(call, snapshot.subarray(0, end), ending, options.direct, held);
            return;
          }
          void (async () => {
            for (let at = 0; at < end; at += chunkBytes) {
              const piece = snapshot.subarray(at, Math.min(end, at + chunkBytes));
              if (!call.write(encodeChunk(piece))) await new Promise((resolve) => call.once('drain', resolve));
            }
            if (stall) held.push(() => call.end());
            else if (end < snapshot.length) call.emit('error', { code: status.UNAVAILABLE, details: 'the peer died' });
            else call.end();
          })();
        },
      },
    );
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) =>
        error ? reject(error) : resolve(bound),
      ),
    );
    peer = new SnapshotPeer(server, port, held);
    return peer;
  }

  close(): Promise<void> {
    for (const release of this.#held.splice(0)) release();
    return new Promise((resolve) => this.#server.tryShutdown(() => resolve()));
  }
}

/** Answers a call with a direct transfer of `bytes` (see SnapshotPeerOptions.direct), then ends or fails it. */
async function transferDirectly(
  call: ServerWritableStream<Buffer, Buffer>,
  bytes: Buffer,
  ending: 'end' | 'cut' | 'stall',
  mode: 'serve' | 'unreachable',
  held: Array<() => void>,
): Promise<void> {
  const ticket = randomBytes(32);
  const listener: NetServer = createServer();
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const { port } = listener.address() as AddressInfo;
  if (mode === 'unreachable') {
    await new Promise<void>((resolve) => listener.close(() => resolve()));
    call.write(encodeDirectChunk(port, ticket));
    // The client gives up on the port and cancels this call; nothing more is sent here.
    return;
  }
  listener.once('connection', (socket) => {
    listener.close();
    socket.once('data', () => {
      socket.write(bytes, () => {
        if (ending === 'stall') {
          held.push(() => {
            socket.destroy();
            call.end();
          });
        } else if (ending === 'cut') {
          socket.destroy();
          call.emit('error', { code: status.UNAVAILABLE, details: 'the peer died' });
        } else {
          socket.end();
          call.end();
        }
      });
    });
  });
  call.write(encodeDirectChunk(port, ticket));
}

/**
 * A peer that accepts TCP connections and never sends a byte (not even HTTP/2's preface): a hung process
 * whose kernel still accepts, or a port forwarded to nothing that answers.
 */
export class SilentPeer {
  readonly address: string;
  /** How many connections it accepted. */
  connections = 0;
  readonly #listener: NetServer;
  readonly #sockets = new Set<Socket>();

  private constructor(listener: NetServer, port: number) {
    this.#listener = listener;
    this.address = `127.0.0.1:${port}`;
    listener.on('connection', (socket) => {
      this.connections++;
      this.#sockets.add(socket);
      socket.on('error', () => {});
      socket.once('close', () => this.#sockets.delete(socket));
    });
  }

  static async start(): Promise<SilentPeer> {
    const listener = createServer();
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    return new SilentPeer(listener, (listener.address() as AddressInfo).port);
  }

  close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    return new Promise((resolve) => this.#listener.close(() => resolve()));
  }
}
