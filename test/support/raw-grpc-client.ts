import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect,
  constants,
  type IncomingHttpHeaders,
} from 'node:http2';
import { grpcFrame } from './protobuf-wire.js';

/** What the server answered to one raw call. */
export interface RawReply {
  /** The HTTP status of the response headers. */
  readonly httpStatus: number;
  /** grpc-status, from the trailers (or from the headers of a trailers-only response). */
  readonly grpcStatus: number;
  /** grpc-message, percent-decoded; empty when absent. */
  readonly grpcMessage: string;
  /** Custom trailing metadata (everything but the pseudo-headers and grpc-status/grpc-message). */
  readonly metadata: Readonly<Record<string, string>>;
  /** The reply messages, unframed. */
  readonly frames: readonly Buffer[];
}

export interface RawCallOptions {
  /** Sent as grpc-timeout, so the server ends the call by itself (default 5000). */
  readonly deadlineMs?: number;
  /**
   * How long past the deadline to wait for the server's status before calling the call hung and
   * failing (default 5000): a server that keeps a call open past its deadline is a defect too.
   */
  readonly graceMs?: number;
}

/** A transport error, or a server that never sent a status: the call itself failed. */
export class RawCallFailure extends Error {
  override readonly name = 'RawCallFailure';
}

const RESERVED = new Set(['grpc-status', 'grpc-message', 'content-type', 'grpc-encoding', 'grpc-accept-encoding']);

/**
 * A gRPC client on node:http2 that sends bodies exactly as given (already encoded, valid or not) to any
 * kvs2.Kvs2 method over one HTTP/2 connection, and reports the status, message, trailing metadata and
 * reply frames exactly as they came back. For hostile-input tests; everything else uses Kvs2Client.
 */
export class RawGrpcClient {
  readonly #session: ClientHttp2Session;

  private constructor(session: ClientHttp2Session) {
    this.#session = session;
  }

  static async connect(address: string): Promise<RawGrpcClient> {
    const session = connect(`http://${address}`);
    await new Promise<void>((resolve, reject) => {
      session.once('connect', () => resolve());
      session.once('error', reject);
    });
    // An error after connecting surfaces on each call's stream; without a listener it would be thrown.
    session.on('error', () => {});
    return new RawGrpcClient(session);
  }

  /** True while the connection is usable (not closed, not sent GOAWAY). */
  get open(): boolean {
    return !this.#session.closed && !this.#session.destroyed;
  }

  /** Calls `/kvs2.Kvs2/<method>` with `message` as the one request message. */
  call(method: string, message: Buffer, options: RawCallOptions = {}): Promise<RawReply> {
    return this.callFramed(`/kvs2.Kvs2/${method}`, grpcFrame(message), options);
  }

  /** Sends `body` as the whole request body, framing included, to `path`. */
  callFramed(path: string, body: Buffer, options: RawCallOptions = {}): Promise<RawReply> {
    const deadlineMs = options.deadlineMs ?? 5000;
    const graceMs = options.graceMs ?? 5000;
    return new Promise<RawReply>((resolve, reject) => {
      let stream: ClientHttp2Stream;
      try {
        stream = this.#session.request({
          ':method': 'POST',
          ':path': path,
          'content-type': 'application/grpc',
          te: 'trailers',
          'grpc-timeout': `${deadlineMs}m`,
        });
      } catch (error) {
        reject(new RawCallFailure(`${path}: cannot start the call: ${String(error)}`, { cause: error }));
        return;
      }
      let headers: IncomingHttpHeaders = {};
      let trailers: IncomingHttpHeaders | undefined;
      const chunks: Buffer[] = [];
      const timer = setTimeout(() => {
        stream.close(constants.NGHTTP2_CANCEL);
        reject(new RawCallFailure(`${path}: no status ${graceMs} ms after the ${deadlineMs} ms deadline`));
      }, deadlineMs + graceMs);
      stream.on('response', (h) => {
        headers = h;
      });
      stream.on('trailers', (t) => {
        trailers = t;
      });
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('error', (error) => {
        clearTimeout(timer);
        reject(new RawCallFailure(`${path}: stream error: ${error.message}`, { cause: error }));
      });
      stream.on('close', () => {
        clearTimeout(timer);
        const final = trailers ?? headers;
        const statusText = headerText(final['grpc-status']);
        if (statusText === undefined || !/^\d+$/.test(statusText)) {
          reject(
            new RawCallFailure(
              `${path}: closed without a grpc-status (rst code ${stream.rstCode}, headers ${JSON.stringify(headers)})`,
            ),
          );
          return;
        }
        const metadata: Record<string, string> = {};
        for (const [name, value] of Object.entries(final)) {
          if (name.startsWith(':') || RESERVED.has(name)) continue;
          const text = headerText(value);
          if (text !== undefined) metadata[name] = text;
        }
        let frames: Buffer[];
        try {
          frames = unframe(Buffer.concat(chunks));
        } catch (error) {
          reject(error);
          return;
        }
        resolve({
          httpStatus: Number(headers[':status'] ?? 0),
          grpcStatus: Number(statusText),
          grpcMessage: percentDecode(headerText(final['grpc-message']) ?? ''),
          metadata,
          frames,
        });
      });
      stream.end(body);
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#session.close(() => resolve()));
  }
}

function headerText(value: string | string[] | number | undefined): string | undefined {
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(',') : String(value);
}

/** grpc-message is percent-encoded UTF-8. */
function percentDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** Splits a reply body into its gRPC messages; a torn frame at the end is a protocol error. */
function unframe(body: Buffer): Buffer[] {
  const frames: Buffer[] = [];
  let at = 0;
  while (at < body.length) {
    if (body.length - at < 5) throw new RawCallFailure(`torn reply frame prefix: ${body.length - at} bytes`);
    const length = body.readUInt32BE(at + 1);
    if (body.length - at - 5 < length) throw new RawCallFailure(`torn frame: ${length} bytes announced`);
    frames.push(body.subarray(at + 5, at + 5 + length));
    at += 5 + length;
  }
  return frames;
}
