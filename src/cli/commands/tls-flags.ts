import { type Command, Option } from 'commander';
import type { Kvs2TlsOptions } from '../../client/index.js';

interface TlsFlags {
  readonly tlsCa?: string;
  readonly tlsCert?: string;
  readonly tlsKey?: string;
  readonly tlsServerName?: string;
  readonly tls?: true;
}

/**
 * --tls, --tls-ca, --tls-cert, --tls-key, --tls-server-name (and KVS2_CLIENT_TLS_* env): plaintext unless one
 * is given. The variables say CLIENT because `kvs2 serve` reads KVS2_TLS_CERT and KVS2_TLS_KEY for the
 * server's own certificate: one shell may run both.
 */
export function withTlsFlags(command: Command): Command {
  return command
    .addOption(new Option('--tls', "connect over TLS, trusting Node's bundled CAs").env('KVS2_CLIENT_TLS'))
    .addOption(
      new Option('--tls-ca <path>', 'connect over TLS, trusting the CAs in this PEM file').env('KVS2_CLIENT_TLS_CA'),
    )
    .addOption(new Option('--tls-cert <path>', 'client certificate (PEM) for mutual TLS').env('KVS2_CLIENT_TLS_CERT'))
    .addOption(new Option('--tls-key <path>', 'the private key (PEM) of --tls-cert').env('KVS2_CLIENT_TLS_KEY'))
    .addOption(
      new Option(
        '--tls-server-name <name>',
        "check the node's certificate for this name instead of the endpoint's host",
      ).env('KVS2_CLIENT_TLS_SERVER_NAME'),
    );
}

/** The client's `tls` option from the flags, or undefined for plaintext. */
export function tlsOptionOf(command: Command): Kvs2TlsOptions | undefined {
  const { tls, tlsCa, tlsCert, tlsKey, tlsServerName } = command.opts<TlsFlags>();
  if (!tls && [tlsCa, tlsCert, tlsKey, tlsServerName].every((flag) => flag === undefined)) return undefined;
  return {
    ...(tlsCa === undefined ? {} : { ca: tlsCa }),
    ...(tlsCert === undefined ? {} : { cert: tlsCert }),
    ...(tlsKey === undefined ? {} : { key: tlsKey }),
    ...(tlsServerName === undefined ? {} : { serverName: tlsServerName }),
  };
}
