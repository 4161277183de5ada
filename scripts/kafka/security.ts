import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

/**
 * The secrets of a cluster with secure listeners, all made at `up` in `<stateDir>/security/` (mode 0700)
 * and deleted by `down`: a CA, the brokers' certificate it signed, a client certificate it signed for mutual
 * TLS, and the password of the SASL user. Certificates come from `openssl`; Kafka reads them as PEM
 * (`ssl.keystore.type=PEM`), so no keytool or PKCS#12 step is needed.
 */

const run = promisify(execFile);

/** The SASL user every mechanism of the SASL_SSL listener knows. */
export const SASL_USERNAME = 'kvs2';
export const SASL_MECHANISMS = ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512'] as const;
export const SECURITY_DIR = 'security';

/** Long enough for a cluster a developer keeps up for months; these certificates never leave the machine. */
const VALID_DAYS = '825';

/** Where a secure cluster's files are, by absolute path. */
export interface SecurityFiles {
  readonly dir: string;
  readonly caFile: string;
  readonly caKeyFile: string;
  readonly brokerCertFile: string;
  readonly brokerKeyFile: string;
  /** The brokers' PEM key store: the PKCS#8 private key, then the certificate chain (broker, CA). */
  readonly brokerKeystoreFile: string;
  readonly clientCertFile: string;
  readonly clientKeyFile: string;
  readonly passwordFile: string;
}

export function securityFiles(stateDir: string): SecurityFiles {
  const dir = resolve(stateDir, SECURITY_DIR);
  return {
    dir,
    caFile: join(dir, 'ca.crt'),
    caKeyFile: join(dir, 'ca.key'),
    brokerCertFile: join(dir, 'broker.crt'),
    brokerKeyFile: join(dir, 'broker.key'),
    brokerKeystoreFile: join(dir, 'broker-keystore.pem'),
    clientCertFile: join(dir, 'client.crt'),
    clientKeyFile: join(dir, 'client.key'),
    passwordFile: join(dir, `${SASL_USERNAME}.password`),
  };
}

/**
 * Makes the CA, the broker and client certificates and a fresh password. The broker's certificate names
 * 127.0.0.1 and localhost, so clients that verify the host name they connect to accept it.
 */
export async function makeSecurityFiles(stateDir: string): Promise<SecurityFiles> {
  const files = securityFiles(stateDir);
  await mkdir(files.dir, { recursive: true, mode: 0o700 });
  await chmod(files.dir, 0o700);
  const config = join(files.dir, 'openssl.cnf');
  // Our own configuration, so the result does not depend on the system's openssl.cnf.
  await writeFile(
    config,
    [
      '[req]',
      'distinguished_name = dn',
      '[dn]',
      '[ca]',
      'basicConstraints = critical, CA:TRUE',
      'keyUsage = critical, keyCertSign, cRLSign',
      'subjectKeyIdentifier = hash',
      '[broker]',
      'basicConstraints = critical, CA:FALSE',
      'keyUsage = critical, digitalSignature, keyEncipherment',
      'extendedKeyUsage = serverAuth',
      'subjectAltName = IP:127.0.0.1, DNS:localhost',
      '[client]',
      'basicConstraints = critical, CA:FALSE',
      'keyUsage = critical, digitalSignature, keyEncipherment',
      'extendedKeyUsage = clientAuth',
      '',
    ].join('\n'),
  );
  await newKey(files.caKeyFile);
  await openssl(
    ...['req', '-x509', '-new', '-key', files.caKeyFile, '-subj', '/CN=kvs2 local Kafka CA', '-config', config],
    ...['-extensions', 'ca', '-days', VALID_DAYS, '-out', files.caFile],
  );
  const leaf = async (name: 'broker' | 'client', subject: string, certFile: string, keyFile: string) => {
    const csr = join(files.dir, `${name}.csr`);
    await newKey(keyFile);
    await openssl('req', '-new', '-key', keyFile, '-subj', subject, '-config', config, '-out', csr);
    await openssl(
      ...['x509', '-req', '-in', csr, '-CA', files.caFile, '-CAkey', files.caKeyFile, '-set_serial', serial()],
      ...['-days', VALID_DAYS, '-extfile', config, '-extensions', name, '-out', certFile],
    );
    await rm(csr);
  };
  await Promise.all([
    leaf('broker', '/CN=localhost', files.brokerCertFile, files.brokerKeyFile),
    leaf('client', '/CN=kvs2-client', files.clientCertFile, files.clientKeyFile),
  ]);
  const [key, cert, ca] = await Promise.all(
    [files.brokerKeyFile, files.brokerCertFile, files.caFile].map((file) => readFile(file, 'utf8')),
  );
  await rm(config);
  await writeFile(files.brokerKeystoreFile, `${key}${cert}${ca}`, { mode: 0o600 });
  // base64url: no character that would need escaping in a JAAS string, a properties file or --add-scram.
  await writeFile(files.passwordFile, randomBytes(24).toString('base64url'), { mode: 0o600 });
  return files;
}

export async function readPassword(files: SecurityFiles): Promise<string> {
  return (await readFile(files.passwordFile, 'utf8')).trim();
}

/** An EC P-256 private key in PKCS#8 PEM (what Kafka's PEM key store reads), readable by its owner only. */
async function newKey(file: string): Promise<void> {
  await openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file);
  await chmod(file, 0o600);
}

async function openssl(...args: string[]): Promise<void> {
  try {
    await run('openssl', args);
  } catch (error) {
    const { code, stderr } = error as NodeJS.ErrnoException & { stderr?: string };
    if (code === 'ENOENT') throw new Error('a secure cluster needs openssl, which is not on PATH');
    throw new Error(`openssl ${args[0]} failed: ${(stderr ?? String(error)).trim()}`);
  }
}

function serial(): string {
  return `0x${randomBytes(8).toString('hex')}`;
}
