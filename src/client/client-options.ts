import type { ChannelCredentials } from '@grpc/grpc-js';

/** TLS to the node: trust these CAs and, for mutual TLS, present this certificate. */
export interface Kvs2TlsOptions {
  /**
   * CA certificates to trust, PEM: a file path, or the PEM text itself (a string starting `-----BEGIN`) or a
   * Buffer of it. Default: Node's bundled roots.
   */
  readonly ca?: string | Buffer;
  /** The client certificate chain for mutual TLS, PEM (path, text or Buffer, as `ca`); needs `key`. */
  readonly cert?: string | Buffer;
  /** The private key of `cert`, PEM (path, text or Buffer, as `ca`). */
  readonly key?: string | Buffer;
  /** Check the server's certificate against this name instead of the endpoint's host (e.g. when dialling an IP). */
  readonly serverName?: string;
}

/** Retries of reads (Get, MultiGet, Scan, Status) answered UNAVAILABLE; writes are never retried. */
export interface Kvs2ReadRetryOptions {
  /** Attempts in all, the first included: 2 to 5 (grpc-js's limit); default 3. */
  readonly maxAttempts?: number;
  /** Backoff before the first retry, in ms (default 100); it doubles per retry up to `maxBackoffMs`. */
  readonly initialBackoffMs?: number;
  /** Longest backoff between two attempts, in ms (default 1000). */
  readonly maxBackoffMs?: number;
}

export interface Kvs2ClientOptions {
  /** The node's address, `host:port`; only read when the options are the constructor's only argument. */
  readonly endpoint?: string;
  /** Default deadline of each call, in milliseconds (default 10 s); retries of a read stay within it. */
  readonly timeoutMs?: number;
  /** Largest reply accepted, in bytes (default 64 MiB). */
  readonly maxReceiveBytes?: number;
  /**
   * Use a connection of this client's own instead of sharing one with other clients of the same address
   * (grpc-js shares by default); a paused Watch then cannot hold up other calls' flow control.
   */
  readonly ownConnection?: boolean;
  /** Connect over TLS: `true` for the default roots, or the CAs, client certificate and key to use. */
  readonly tls?: true | Kvs2TlsOptions;
  /** grpc-js credentials built by the caller, for what `tls` does not cover; not together with `tls`. */
  readonly credentials?: ChannelCredentials;
  /**
   * A bearer token, sent as `authorization: Bearer <token>` with every call, for a node run with
   * --auth-file. Send it over TLS unless the node is on loopback: anyone who sees it can use it.
   */
  readonly token?: string;
  /** Retries of reads on UNAVAILABLE (on by default); `false` for none. */
  readonly readRetries?: false | Kvs2ReadRetryOptions;
}

/** An option the client cannot work with; thrown by the constructor, before anything is opened. */
export class Kvs2ClientOptionError extends Error {
  override readonly name = 'Kvs2ClientOptionError';
  readonly code = 'CLIENT_OPTION_INVALID';

  constructor(
    readonly option: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`kvs2 client option ${option}: ${message}`, options);
  }
}

/** A whole number within [min, max], or the default when not given. */
export function wholeNumberOption(
  option: string,
  value: number | undefined,
  fallback: number,
  min: number,
  max: number,
) {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Kvs2ClientOptionError(option, `must be a whole number from ${min} to ${max}, not ${value}`);
  }
  return value;
}
