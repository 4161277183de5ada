/**
 * The ceiling of Node's HTTP/2 itself: gRPC's unary framing on `node:http2` with no gRPC library. It
 * decodes each request and encodes each reply with the same generated codecs as kvs2 and the grpc-js no-op
 * server, so the difference to that server is grpc-js's own work per call. Deliberately minimal: unary calls
 * only, no deadlines, no compression, no metadata; it exists to be measured, not to serve users.
 */
import { createServer, type ServerHttp2Stream } from 'node:http2';

/** One unary method: decode the request message, return the reply message's bytes. */
export type UnaryHandler = (request: Buffer) => Uint8Array;

const FRAME_HEADER_BYTES = 5;

/** Serves the given unary methods (by gRPC path) on `host:port`; resolves with the bound port. */
export function listenBareHttp2(
  host: string,
  port: number,
  methods: ReadonlyMap<string, UnaryHandler>,
): Promise<{ port: number; close(): Promise<void> }> {
  const server = createServer();
  // A client that goes away mid-call (ghz closes its connections when a run ends) resets streams and
  // sessions: nothing to do but forget them, as any server must.
  server.on('sessionError', () => {});
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    const handler = methods.get(String(headers[':path']));
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => {
      if (handler === undefined) return finish(stream, 12, undefined);
      const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
      const length = body.length >= FRAME_HEADER_BYTES ? body.readUInt32BE(1) : -1;
      if (body[0] !== 0 || length !== body.length - FRAME_HEADER_BYTES) return finish(stream, 13, undefined);
      finish(stream, 0, handler(body.subarray(FRAME_HEADER_BYTES)));
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const address = server.address();
      resolve({
        port: typeof address === 'object' && address !== null ? address.port : port,
        close: () => new Promise((done) => server.close(() => done())),
      });
    });
  });
}

function finish(stream: ServerHttp2Stream, status: number, reply: Uint8Array | undefined): void {
  stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
  stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': String(status) }));
  if (reply === undefined) {
    stream.end();
    return;
  }
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + reply.length);
  frame[0] = 0;
  frame.writeUInt32BE(reply.length, 1);
  frame.set(reply, FRAME_HEADER_BYTES);
  stream.end(frame);
}
