import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ServerCredentials } from '@grpc/grpc-js';
import { tempDir } from './paths.js';
import { StandInNode } from './stand-in-node.js';

/**
 * Skip options for tests that make certificates with openssl: skipped on a machine without it, never in CI
 * (there the test runs and fails loudly), as the Kafka tests do.
 */
export function needsOpenssl(): { skip?: string } {
  return !hasOpenssl() && process.env.CI !== 'true' ? { skip: 'openssl is not installed' } : {};
}

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** A self-signed certificate and key for `name` in `dir`, made by openssl (EC P-256, valid two days). */
export function selfSigned(dir: string, name: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  execFileSync(
    'openssl',
    [
      ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'],
      ...['-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${name}`, '-addext', `subjectAltName=DNS:${name}`],
    ],
    { stdio: 'ignore' },
  );
  return { cert, key };
}

/** A certificate authority made by openssl: its certificate signs leaves with `leaf()`. */
export interface TestCa {
  readonly cert: string;
  readonly key: string;
  /** A certificate and key for `name` (CN and DNS SAN) signed by this CA, in the CA's folder. */
  leaf(name: string): { cert: string; key: string };
}

/** A CA named `name` in `dir` (EC P-256, valid two days). */
export function testCa(dir: string, name: string): TestCa {
  const { cert, key } = selfSigned(dir, name);
  let serial = 0;
  return {
    cert,
    key,
    leaf(leafName: string) {
      serial++;
      const stem = join(dir, `${leafName}.by-${name}.${serial}`);
      const leaf = { cert: `${stem}.crt`, key: `${stem}.key` };
      const csr = `${stem}.csr`;
      const extensions = `${stem}.ext`;
      writeFileSync(extensions, `subjectAltName=DNS:${leafName}\nbasicConstraints=CA:FALSE\n`);
      execFileSync(
        'openssl',
        [
          ...['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'],
          ...['-keyout', leaf.key, '-out', csr, '-subj', `/CN=${leafName}`],
        ],
        { stdio: 'ignore' },
      );
      execFileSync(
        'openssl',
        [
          ...['x509', '-req', '-in', csr, '-CA', cert, '-CAkey', key, '-set_serial', String(Date.now() + serial)],
          ...['-days', '2', '-extfile', extensions, '-out', leaf.cert],
        ],
        { stdio: 'ignore' },
      );
      return leaf;
    },
  };
}

/** A stand-in node that serves mutual TLS with fresh certificates: it trusts only `client`'s. */
export interface MutualTlsStandIn {
  /** The folder holding the certificates, removed by close(). */
  readonly dir: string;
  readonly node: StandInNode;
  readonly server: { cert: string; key: string };
  readonly client: { cert: string; key: string };
  close(): Promise<void>;
}

export async function startMutualTlsStandIn(prefix: string): Promise<MutualTlsStandIn> {
  const dir = await tempDir(prefix);
  const server = selfSigned(dir.path, 'kvs2.test');
  const client = selfSigned(dir.path, 'client.test');
  const node = await StandInNode.start(
    ServerCredentials.createSsl(
      readFileSync(client.cert),
      [{ cert_chain: readFileSync(server.cert), private_key: readFileSync(server.key) }],
      true,
    ),
  );
  return {
    dir: dir.path,
    node,
    server,
    client,
    close: async () => {
      await node.close();
      await dir.remove();
    },
  };
}
