import { once } from 'node:events';
import { connect as connectNet, type Socket } from 'node:net';
import { type ConnectionOptions, connect as connectTls } from 'node:tls';
import type { Kvs2ClientOptions } from './client-options.js';
import { pem } from './tls-credentials.js';

/** How long connecting (and the TLS handshake) may take before the client streams the image instead. */
const CONNECT_TIMEOUT_MS = 10_000;

/** Where and how a client reaches a node's direct transfers: the endpoint's host, with the channel's TLS. */
export interface DirectFetchTarget {
  readonly host: string;
  /** tls.connect options (CA, client certificate, server name); null for plaintext. */
  readonly tls: ConnectionOptions | null;
}

/**
 * The target of an endpoint `host:port` (or `[v6]:port`) and the client's TLS options; null when the client
 * cannot open a socket like its channel (an endpoint grpc-js resolves otherwise, or channel credentials
 * given as such): it then never asks for a direct transfer.
 */
export function directFetchTargetOf(endpoint: string, options: Kvs2ClientOptions): DirectFetchTarget | null {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:/[\]]+)):(\d+)$/.exec(endpoint);
  const host = match?.[1] ?? match?.[2];
  if (host === undefined || options.credentials !== undefined) return null;
  if (options.tls === undefined) return { host, tls: null };
  if (options.tls === true) return { host, tls: {} };
  const { ca, cert, key, serverName } = options.tls;
  return {
    host,
    tls: {
      ...(ca === undefined ? {} : { ca: pem(ca, 'tls.ca') ?? undefined }),
      ...(cert === undefined ? {} : { cert: pem(cert, 'tls.cert') ?? undefined }),
      ...(key === undefined ? {} : { key: pem(key, 'tls.key') ?? undefined }),
      ...(serverName === undefined ? {} : { servername: serverName }),
    },
  };
}

/**
 * Connects to a node's direct transfer on `port` and sends the ticket; resolves with the socket, whose bytes
 * are then the store image. Rejects (and leaves nothing open) when the node cannot be reached within
 * CONNECT_TIMEOUT_MS, the TLS handshake fails, or `signal` aborts.
 */
export async function connectDirect(
  target: DirectFetchTarget,
  port: number,
  ticket: Uint8Array,
  signal: AbortSignal | undefined,
): Promise<Socket> {
  const socket =
    target.tls === null
      ? connectNet({ host: target.host, port })
      : connectTls({ ...target.tls, host: target.host, port });
  const connecting = AbortSignal.any([AbortSignal.timeout(CONNECT_TIMEOUT_MS), ...(signal ? [signal] : [])]);
  try {
    await once(socket, target.tls === null ? 'connect' : 'secureConnect', { signal: connecting });
  } catch (error) {
    socket.destroy();
    throw error;
  }
  socket.write(ticket);
  return socket;
}
