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

export interface SnapshotPeerOptions {
  /** Stop after sending this many bytes of the snapshot and fail the stream UNAVAILABLE, as a peer dying mid-way. */
  readonly cutAfterBytes?: number;
  /** Bytes per chunk (default 16 KiB). */
  readonly chunkBytes?: number;
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

  private constructor(server: Server, port: number) {
    this.#server = server;
    this.address = `127.0.0.1:${port}`;
  }

  static async start(snapshot: Buffer, options: SnapshotPeerOptions = {}): Promise<SnapshotPeer> {
    const server = new Server();
    const chunkBytes = options.chunkBytes ?? 16 * 1024;
    const end = Math.min(snapshot.length, options.cutAfterBytes ?? snapshot.length);
    let peer: SnapshotPeer | undefined;
    server.addService(
      {
        snapshot: {
          path: '/kvs2.Kvs2/Snapshot',
          requestStream: false,
          responseStream: true,
          requestSerialize: (value: Buffer) => value,
          requestDeserialize: (bytes: Buffer) => bytes,
          responseSerialize: (value: Buffer) => encodeChunk(value),
          responseDeserialize: (bytes: Buffer) => bytes,
        },
      },
      {
        snapshot: (call: ServerWritableStream<Buffer, Buffer>) => {
          if (peer !== undefined) peer.calls++;
          void (async () => {
            for (let at = 0; at < end; at += chunkBytes) {
              const piece = snapshot.subarray(at, Math.min(end, at + chunkBytes));
              if (!call.write(piece)) await new Promise((resolve) => call.once('drain', resolve));
            }
            if (end < snapshot.length) call.emit('error', { code: status.UNAVAILABLE, details: 'the peer died' });
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
    peer = new SnapshotPeer(server, port);
    return peer;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#server.tryShutdown(() => resolve()));
  }
}
