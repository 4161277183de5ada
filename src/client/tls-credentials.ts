import { readFileSync } from 'node:fs';
import { type ChannelCredentials, credentials } from '@grpc/grpc-js';
import { Kvs2ClientOptionError, type Kvs2ClientOptions, type Kvs2TlsOptions } from './client-options.js';

/** The channel credentials of the options: plaintext unless `tls` or `credentials` say otherwise. */
export function channelCredentialsOf(options: Kvs2ClientOptions): ChannelCredentials {
  if (options.credentials !== undefined && options.tls !== undefined) {
    throw new Kvs2ClientOptionError('tls', 'give tls or credentials, not both');
  }
  if (options.credentials !== undefined) return options.credentials;
  if (options.tls === undefined) return credentials.createInsecure();
  const tls: Kvs2TlsOptions = options.tls === true ? {} : options.tls;
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    throw new Kvs2ClientOptionError(
      tls.cert === undefined ? 'tls.cert' : 'tls.key', // the one missing
      'mutual TLS needs both cert and key',
    );
  }
  return credentials.createSsl(pem(tls.ca, 'tls.ca'), pem(tls.key, 'tls.key'), pem(tls.cert, 'tls.cert'));
}

/** The channel option that makes the certificate check use `tls.serverName`, when given. */
export function serverNameOption(options: Kvs2ClientOptions): Record<string, string> {
  const serverName = options.tls === true ? undefined : options.tls?.serverName;
  return serverName === undefined ? {} : { 'grpc.ssl_target_name_override': serverName };
}

/** PEM bytes from a Buffer, PEM text, or a path; read once here, so a missing file fails at construction. */
export function pem(source: string | Buffer | undefined, option: string): Buffer | null {
  if (source === undefined) return null;
  if (Buffer.isBuffer(source)) return source;
  if (source.trimStart().startsWith('-----BEGIN')) return Buffer.from(source);
  try {
    return readFileSync(source);
  } catch (error) {
    throw new Kvs2ClientOptionError(option, `cannot read ${source}: ${(error as Error).message}`, { cause: error });
  }
}
