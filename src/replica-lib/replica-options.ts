import { type Config, parseConfig, type RawSettings } from '../config/config.js';
import { ConfigError } from '../config/config-error.js';
import { STORE_MAX_KEY_BYTES } from '../config/limits.js';
import { Kvs2Error } from '../errors.js';
import type { ReplicaOptions } from './replica-api.js';

/** The option each node setting comes from, so that a refusal names what the application passed. */
const OPTION_OF: Readonly<Record<string, string>> = {
  '--kafka-brokers': 'kafka.brokers',
  '--topic': 'kafka.topic',
  '--partitions': 'kafka.partitions',
  '--data-dir': 'dataDir',
  '--max-value-bytes': 'maxValueBytes',
  '--kafka-security-protocol': 'kafka.security.protocol',
  '--kafka-tls-ca': 'kafka.security.tlsCaFile',
  '--kafka-tls-cert': 'kafka.security.tlsCertFile',
  '--kafka-tls-key': 'kafka.security.tlsKeyFile',
  '--kafka-sasl-mechanism': 'kafka.security.sasl.mechanism',
  '--kafka-sasl-username': 'kafka.security.sasl.username',
  '--kafka-sasl-password-file': 'kafka.security.sasl (passwordFile or password)',
  '--bootstrap-from': 'bootstrapFrom.peers',
  '--bootstrap-tls-ca': 'bootstrapFrom.tlsCaFile',
  '--bootstrap-token-file': 'bootstrapFrom.tokenFile',
  '--bootstrap-stall-timeout-ms': 'bootstrapFrom.stallTimeoutMs',
};

/** The environment variable parseConfig reads the SASL password from; here it is only ever the option. */
const PASSWORD_ENV = 'KVS2_KAFKA_SASL_PASSWORD';

/**
 * The library's options as a node's Config, through the node's own parser: the same defaults (partitions,
 * the security protocol inferred from what is given) and the same checks. Kafka only: an embedded log
 * belongs to the one node that writes it. Refusals are INVALID_ARGUMENT naming the option.
 */
export function replicaConfig(options: ReplicaOptions): Config & { readonly kafka: NonNullable<Config['kafka']> } {
  if (typeof options !== 'object' || options === null) throw invalid('options are missing');
  const { kafka } = options;
  if (typeof kafka !== 'object' || kafka === null) {
    throw invalid(
      'kafka is missing: the in-process replica reads a Kafka topic (kafka: { brokers, topic }). It cannot ' +
        "follow a node's embedded log, which belongs to that one node: run the node on Kafka, or read it with Kvs2Client",
    );
  }
  if (!Array.isArray(kafka.brokers) || kafka.brokers.length === 0) {
    throw invalid('kafka.brokers must list at least one host:port');
  }
  if (typeof kafka.topic !== 'string' || kafka.topic === '') throw invalid('kafka.topic is missing');
  if (typeof options.dataDir !== 'string' || options.dataDir === '') throw invalid('dataDir is missing');
  const security = kafka.security ?? {};
  const sasl = security.sasl;
  if (sasl !== undefined && (sasl.password === undefined) === (sasl.passwordFile === undefined)) {
    throw invalid('kafka.security.sasl needs a password or a passwordFile (one of the two)');
  }
  const raw: Record<string, string | undefined> = {
    'kafka-brokers': kafka.brokers.join(','),
    topic: kafka.topic,
    'data-dir': options.dataDir,
    // Keys other producers wrote may be as long as the store takes; the library reads them all.
    'max-key-bytes': String(STORE_MAX_KEY_BYTES),
    partitions: optionalNumber(kafka.partitions),
    'max-value-bytes': optionalNumber(options.maxValueBytes),
    'kafka-security-protocol': security.protocol,
    'kafka-tls-ca': security.tlsCaFile,
    'kafka-tls-cert': security.tlsCertFile,
    'kafka-tls-key': security.tlsKeyFile,
    'kafka-sasl-mechanism': sasl?.mechanism,
    'kafka-sasl-username': sasl?.username,
    'kafka-sasl-password-file': sasl?.passwordFile,
    'bootstrap-from': options.bootstrapFrom?.peers.join(','),
    'bootstrap-tls-ca': options.bootstrapFrom?.tlsCaFile,
    'bootstrap-token-file': options.bootstrapFrom?.tokenFile,
    'bootstrap-stall-timeout-ms': optionalNumber(options.bootstrapFrom?.stallTimeoutMs),
  };
  const settings = Object.fromEntries(Object.entries(raw).filter(([, value]) => value !== undefined)) as RawSettings;
  let config: Config;
  try {
    // Never the process's environment: the options are the whole configuration.
    config = parseConfig(
      settings,
      process.cwd(),
      sasl?.password === undefined ? {} : { [PASSWORD_ENV]: sasl.password },
    );
  } catch (error) {
    throw error instanceof ConfigError ? optionError(error) : error;
  }
  const { kafka: parsed } = config;
  if (parsed === null) throw invalid('kafka.brokers must list at least one host:port');
  return { ...config, kafka: parsed };
}

/** A node's refusal of a setting, as a refusal of the option it came from (INVALID_ARGUMENT). */
export function optionError(error: ConfigError): Kvs2Error {
  const option = OPTION_OF[error.setting] ?? error.setting;
  return invalid(`${option}: ${error.message.replace(/^invalid \S+: /, '')}`);
}

function optionalNumber(value: number | undefined): string | undefined {
  return value === undefined ? undefined : String(value);
}

function invalid(message: string): Kvs2Error {
  return new Kvs2Error('INVALID_ARGUMENT', `openReplica: ${message}`);
}
