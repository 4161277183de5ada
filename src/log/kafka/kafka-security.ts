import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { ConnectionOptions } from 'node:tls';
import {
  flagOf,
  type KafkaSasl,
  type KafkaSecurity,
  type KafkaTlsFiles,
  type SettingName,
} from '../../config/config.js';
import { ConfigError } from '../../config/config-error.js';
import type { KafkaConnectionSecurity } from './kafka-clients.js';

/**
 * The configured TLS and SASL as the Kafka clients take them. Certificate files are read once, here, at
 * start-up (a restart picks up new ones); an unreadable file is a ConfigError naming its setting, before
 * anything connects. The password file is checked now and re-read for every new connection.
 */
export function loadKafkaSecurity(security: KafkaSecurity): KafkaConnectionSecurity {
  return {
    ...(security.tls === null ? {} : { tls: tlsOptions(security.tls) }),
    ...(security.sasl === null ? {} : { sasl: saslOptions(security.sasl) }),
  };
}

function tlsOptions(files: KafkaTlsFiles): ConnectionOptions {
  const options: ConnectionOptions = {};
  if (files.caFile !== null) options.ca = readPem('kafka-tls-ca', files.caFile);
  if (files.certFile !== null && files.keyFile !== null) {
    options.cert = readPem('kafka-tls-cert', files.certFile);
    options.key = readPem('kafka-tls-key', files.keyFile);
  }
  return options;
}

function saslOptions(sasl: KafkaSasl): NonNullable<KafkaConnectionSecurity['sasl']> {
  const source = sasl.password;
  let password: () => Promise<string>;
  if ('file' in source) {
    const { file } = source;
    passwordFrom(readFileOrConfigError('kafka-sasl-password-file', file).toString('utf8'), file);
    password = async () => passwordFrom(await readFile(file, 'utf8'), file);
  } else {
    const { value } = source;
    password = async () => value.reveal();
  }
  return { mechanism: sasl.mechanism, username: sasl.username, password };
}

/** A password file as secret managers and Kubernetes write it: the password, perhaps with a final newline. */
function passwordFrom(text: string, file: string): string {
  const password = text.replace(/\r?\n$/, '');
  if (password === '') throw new ConfigError(flagOf('kafka-sasl-password-file'), `${file} is empty`);
  return password;
}

function readPem(setting: SettingName, file: string): Buffer {
  const bytes = readFileOrConfigError(setting, file);
  if (!bytes.includes('-----BEGIN ')) {
    throw new ConfigError(flagOf(setting), `${file} holds no PEM block (-----BEGIN ...)`);
  }
  return bytes;
}

function readFileOrConfigError(setting: SettingName, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new ConfigError(flagOf(setting), `cannot read ${file} (${reason})`);
  }
}
