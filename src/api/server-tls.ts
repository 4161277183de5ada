import { readFileSync } from 'node:fs';
import { createSecureContext, type TlsOptions } from 'node:tls';
import { experimental, type ServerCredentials } from '@grpc/grpc-js';
import { flagOf, type TlsFiles } from '../config/config.js';
import { ConfigError } from '../config/config-error.js';

type CaListener = experimental.CaCertificateUpdateListener;
type IdentityListener = experimental.IdentityCertificateUpdateListener;

/** The PEM bytes of the three files, read and checked together. */
interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly clientCa: Buffer | null;
}

/**
 * The gRPC server's certificates, read from their files and re-read by `reload()` (SIGHUP). It is a grpc-js
 * CertificateProvider: the server's credentials come from grpc-js's own certificate-provider credentials,
 * which hand every update to Node's `setSecureContext`, so new connections get the new certificates while
 * connections already open keep theirs and their calls go on.
 *
 * grpc-js's FileWatcherCertificateProvider is not used: when a read fails it withdraws the certificates,
 * and the server then drops every new connection; here a bad file keeps the last good certificates.
 */
export class ServerTls implements experimental.CertificateProvider {
  readonly #files: TlsFiles;
  #material: TlsMaterial;
  readonly #caListeners = new Set<CaListener>();
  readonly #identityListeners = new Set<IdentityListener>();

  private constructor(files: TlsFiles, material: TlsMaterial) {
    this.#files = files;
    this.#material = material;
  }

  /** Reads and checks the files; a ConfigError names the setting whose file is unreadable or unusable. */
  static load(files: TlsFiles): ServerTls {
    return new ServerTls(files, readMaterial(files));
  }

  /** Whether clients must present a certificate signed by --tls-client-ca. */
  get mutual(): boolean {
    return this.#files.clientCaFile !== null;
  }

  /** Server credentials that follow this provider's certificates. */
  credentials(): ServerCredentials {
    // grpc-js's declaration names its first two parameters the other way round; its code takes the
    // identity (certificate and key) provider first and the CA provider second, as passed here.
    return experimental.createCertificateProviderServerCredentials(this, this.mutual ? this : null, this.mutual);
  }

  /**
   * Options for a Node TLS server with the certificates in use now, requiring client certificates signed by
   * --tls-client-ca as the gRPC server does: a direct transfer (direct-transfer.ts) is as private as the call.
   */
  secureContextOptions(): TlsOptions {
    const { cert, key, clientCa } = this.#material;
    return clientCa === null ? { cert, key } : { cert, key, ca: clientCa, requestCert: true, rejectUnauthorized: true };
  }

  /**
   * Re-reads the files. If they are all readable and make a usable certificate, key and CA, new connections
   * use them; otherwise the old ones stay and the ConfigError says why.
   */
  reload(): void {
    const material = readMaterial(this.#files);
    this.#material = material;
    for (const listener of this.#identityListeners) listener({ certificate: material.cert, privateKey: material.key });
    if (material.clientCa !== null) {
      for (const listener of this.#caListeners) listener({ caCertificate: material.clientCa });
    }
  }

  addCaCertificateListener(listener: CaListener): void {
    this.#caListeners.add(listener);
    const ca = this.#material.clientCa;
    // grpc-js expects the first update after the listener is added, as its own providers do it.
    if (ca !== null) process.nextTick(listener, { caCertificate: ca });
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.#caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.#identityListeners.add(listener);
    process.nextTick(listener, { certificate: this.#material.cert, privateKey: this.#material.key });
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.#identityListeners.delete(listener);
  }
}

function readMaterial(files: TlsFiles): TlsMaterial {
  const cert = readPem('tls-cert', files.certFile);
  const key = readPem('tls-key', files.keyFile);
  const clientCa = files.clientCaFile === null ? null : readPem('tls-client-ca', files.clientCaFile);
  // Node's own parser checks what grpc-js would later hand it: that the PEM parses and the key matches
  // the certificate. A context that does not build here would make the server refuse every connection.
  try {
    createSecureContext({ cert, key });
  } catch (error) {
    throw new ConfigError(
      `${flagOf('tls-cert')}/${flagOf('tls-key')}`,
      `${files.certFile} and ${files.keyFile} do not make a usable certificate and key: ${(error as Error).message}`,
    );
  }
  if (clientCa !== null) {
    try {
      createSecureContext({ ca: clientCa });
    } catch (error) {
      throw new ConfigError(
        flagOf('tls-client-ca'),
        `${files.clientCaFile} is not usable PEM CA certificates: ${(error as Error).message}`,
      );
    }
    if (!clientCa.toString('latin1').includes('-----BEGIN CERTIFICATE-----')) {
      throw new ConfigError(flagOf('tls-client-ca'), `${files.clientCaFile} holds no PEM certificate`);
    }
  }
  return { cert, key, clientCa };
}

function readPem(name: 'tls-cert' | 'tls-key' | 'tls-client-ca', path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new ConfigError(flagOf(name), `cannot read ${path}: ${(error as Error).message}`);
  }
}

/** Whether `host` is reachable only from this machine: `localhost`, 127.0.0.0/8 or ::1. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || h === '::ffff:127.0.0.1';
}

/**
 * The start-up warning for plaintext gRPC on an address other machines may reach, or null when there is
 * nothing to warn about (TLS is on, or the address is loopback).
 */
export function plaintextExposureWarning(host: string, port: number, tls: boolean): string | null {
  if (tls || isLoopbackHost(host)) return null;
  return (
    `WARNING: gRPC on ${host}:${port} is PLAINTEXT and reachable from other machines: anyone who reaches it can ` +
    'read and write every key; serve TLS with --tls-cert and --tls-key (and --tls-client-ca for client certificates)'
  );
}
