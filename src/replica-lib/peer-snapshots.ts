import { readFileSync } from 'node:fs';
import { Kvs2Client } from '../client/index.js';
import type { PeerBootstrapConfig, TlsFiles } from '../config/config.js';
import { ConfigError } from '../config/config-error.js';
import type { PeerSnapshotStream } from '../replica/peer-bootstrap.js';

/**
 * The Snapshot RPC of --bootstrap-from peers (a node's, and the in-process replica's `bootstrapFrom`), as the
 * bootstrap reads it: one client (and connection) per attempt, closed when the stream ends or is abandoned.
 * Over TLS when --bootstrap-tls-ca is given, presenting the node's own certificate for peers that require
 * client certificates; with the token of --bootstrap-token-file, read here, at start-up (an unreadable file
 * is a usage error).
 */
export function peerSnapshotStream(config: PeerBootstrapConfig, serverTls: TlsFiles | null): PeerSnapshotStream {
  const token = config.tokenFile === null ? undefined : readToken(config.tokenFile);
  const tls =
    config.tlsCaFile === null
      ? undefined
      : {
          ca: config.tlsCaFile,
          ...(serverTls === null ? {} : { cert: serverTls.certFile, key: serverTls.keyFile }),
        };
  return (peer, signal, onTransfer) => ({
    async *[Symbol.asyncIterator]() {
      const client = new Kvs2Client(peer, {
        ownConnection: true,
        ...(tls === undefined ? {} : { tls }),
        ...(token === undefined ? {} : { token }),
      });
      try {
        // A peer of this kvs2 sends its store's file, by direct transfer when it has them; an older one the
        // portable format (told apart on arrival).
        yield* client.snapshot({
          signal,
          format: 'store-image',
          direct: true,
          // A silent peer is given up on, and the next one tried, instead of holding the start.
          stallTimeoutMs: config.stallTimeoutMs,
          ...(onTransfer === undefined ? {} : { onTransfer }),
        });
      } finally {
        client.close();
      }
    },
  });
}

function readToken(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new ConfigError('--bootstrap-token-file', `cannot read ${file} (${reason})`);
  }
  const token = text.trim();
  if (token === '') throw new ConfigError('--bootstrap-token-file', `${file} is empty`);
  return token;
}
