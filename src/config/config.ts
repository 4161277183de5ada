import { isAbsolute, resolve } from 'node:path';
import { ConfigError } from './config-error.js';
import { MAX_BATCH_KEYS_CEILING, MAX_VALUE_BYTES_CEILING, STORE_MAX_KEY_BYTES } from './limits.js';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

export interface KafkaConfig {
  readonly brokers: readonly string[];
  readonly topic: string;
  /** Partitions of the topic when kvs2 creates it. */
  readonly partitions: number;
  /** Replication factor of the topic when kvs2 creates it; null means min(3, brokers in the cluster). */
  readonly replicationFactor: number | null;
}

/** PEM files of the gRPC server's TLS: re-read on SIGHUP, so they are kept as paths. */
export interface TlsFiles {
  /** Absolute path of the server's certificate chain. */
  readonly certFile: string;
  /** Absolute path of its private key. */
  readonly keyFile: string;
  /** Absolute path of the CA certificates client certificates must chain to (mutual TLS); null: no client certificates. */
  readonly clientCaFile: string | null;
}

export interface Limits {
  readonly maxKeyBytes: number;
  readonly maxValueBytes: number;
  readonly maxBatchKeys: number;
  readonly maxReplyBytes: number;
}

/** The whole configuration of a node: parsed and validated once, then frozen. */
export interface Config {
  readonly listen: ListenAddress;
  /** Absolute path of the folder that holds the store (and the embedded log). */
  readonly dataDir: string;
  /** Kafka settings; null runs on the embedded log. */
  readonly kafka: KafkaConfig | null;
  readonly limits: Limits;
  /**
   * The largest request body accepted, in bytes: the transport refuses bigger ones before reading them
   * (RESOURCE_EXHAUSTED), so that no request makes the node buffer more than this.
   */
  readonly maxRequestBytes: number;
  /** Bytes of replies all calls in flight may hold together; beyond it reads are shed (OVERLOADED). */
  readonly maxReplyBytesInFlight: number;
  /** The longest a single call may take on the server, whatever deadline the client sent. */
  readonly requestTimeoutMs: number;
  /** How long shutdown waits for calls in flight before cancelling them. */
  readonly shutdownTimeoutMs: number;
  /** After the first catch-up, records behind the log's end beyond which the node is not ready; 0: off. */
  readonly maxReadyLag: number;
  readonly logLevel: LogLevel;
  /** Where the HTTP listener for /metrics, /livez and /readyz listens; null: no listener, no metrics. */
  readonly metricsListen: ListenAddress | null;
  /** TLS on the gRPC server; null serves plaintext. */
  readonly tls: TlsFiles | null;
  /** Absolute path of the tokens-and-permissions file (re-read on SIGHUP); null: no auth, every call allowed. */
  readonly authFile: string | null;
}

/** Settings as they arrive from flags or environment variables: strings, or absent. */
export type RawSettings = Readonly<Partial<Record<SettingName, string>>>;

export type SettingName = (typeof SETTINGS)[number]['name'];

export interface SettingSpec {
  /** The flag without dashes; also names the `KVS2_*` environment variable. */
  readonly name: string;
  readonly valueName: string;
  readonly description: string;
  /** Default as the user would type it; absent means "not set". */
  readonly defaultValue?: string;
}

const DEFAULT_REPLY_BYTES_IN_FLIGHT = 256 * 1024 * 1024;

/** Every setting of `kvs2 serve`, in the order `--help` lists them. */
export const SETTINGS = [
  {
    name: 'listen',
    valueName: 'host:port',
    description: 'address the gRPC server listens on (port 0 picks a free port)',
    defaultValue: '127.0.0.1:50051',
  },
  {
    name: 'data-dir',
    valueName: 'path',
    description: 'folder for the local store (and the embedded log)',
    defaultValue: './data',
  },
  {
    name: 'kafka-brokers',
    valueName: 'host:port,...',
    description: 'Kafka bootstrap brokers; absent runs on the embedded log',
  },
  { name: 'topic', valueName: 'name', description: 'Kafka topic that holds the data', defaultValue: 'kvs2' },
  {
    name: 'partitions',
    valueName: 'n',
    description: 'partitions of the Kafka topic when kvs2 creates it',
    defaultValue: '12',
  },
  {
    name: 'replication-factor',
    valueName: 'n',
    description: 'replication factor of the Kafka topic when kvs2 creates it (default: min(3, brokers))',
  },
  {
    name: 'max-key-bytes',
    valueName: 'n',
    description: `largest key accepted, in bytes (at most ${STORE_MAX_KEY_BYTES})`,
    defaultValue: '1024',
  },
  {
    name: 'max-value-bytes',
    valueName: 'n',
    description: 'largest value accepted, in bytes',
    defaultValue: String(1024 * 1024),
  },
  {
    name: 'max-batch-keys',
    valueName: 'n',
    description: 'most keys one MultiGet, Write or Scan page may carry',
    defaultValue: '10000',
  },
  {
    name: 'max-reply-bytes',
    valueName: 'n',
    description: 'largest reply a node builds for one call, in bytes',
    defaultValue: String(64 * 1024 * 1024),
  },
  {
    name: 'max-request-bytes',
    valueName: 'n',
    description: 'largest request accepted, in bytes (bigger ones are refused before they are read)',
    defaultValue: String(64 * 1024 * 1024),
  },
  {
    name: 'max-reply-bytes-in-flight',
    valueName: 'n',
    description:
      'bytes of replies all calls in flight may hold together; beyond it reads are shed with RESOURCE_EXHAUSTED ' +
      '(default: 268435456, or --max-reply-bytes if larger)',
  },
  {
    name: 'request-timeout-ms',
    valueName: 'ms',
    description: 'deadline of every call on the server, whatever the client asks for',
    defaultValue: '5000',
  },
  {
    name: 'shutdown-timeout-ms',
    valueName: 'ms',
    description: 'how long shutdown waits for calls in flight before cancelling them',
    defaultValue: '5000',
  },
  {
    name: 'max-ready-lag',
    valueName: 'records',
    description: 'once caught up, the node reports NOT_SERVING while more records than this behind the log (0: off)',
    defaultValue: '0',
  },
  {
    name: 'log-level',
    valueName: 'level',
    description: `one of ${LOG_LEVELS.join(', ')}`,
    defaultValue: 'info',
  },
  {
    name: 'metrics-listen',
    valueName: 'host:port',
    description:
      'address of an HTTP listener for Prometheus /metrics and the /livez and /readyz probes (default: none)',
  },
  {
    name: 'tls-cert',
    valueName: 'file',
    description:
      'PEM certificate chain of the gRPC server; with --tls-key the server speaks TLS only (re-read on SIGHUP)',
  },
  { name: 'tls-key', valueName: 'file', description: 'PEM private key of --tls-cert (re-read on SIGHUP)' },
  {
    name: 'tls-client-ca',
    valueName: 'file',
    description:
      'PEM CA certificates: clients must present a certificate signed by one of them (mutual TLS; needs --tls-cert)',
  },
  {
    name: 'auth-file',
    valueName: 'file',
    description:
      'JSON file of bearer token hashes and per-identity permissions on key prefixes; calls must then be allowed (re-read on SIGHUP; default: off, every call allowed)',
  },
] as const satisfies readonly SettingSpec[];

export function flagOf(name: SettingName): string {
  return `--${name}`;
}

export function envVarOf(name: string): string {
  return `KVS2_${name.toUpperCase().replaceAll('-', '_')}`;
}

/** Validates raw settings into a frozen Config, or throws a ConfigError naming the first bad setting. */
export function parseConfig(raw: RawSettings, cwd: string = process.cwd()): Config {
  const value = (name: SettingName): string | undefined => {
    const given = raw[name];
    if (given !== undefined) return given;
    const spec: SettingSpec | undefined = SETTINGS.find((s) => s.name === name);
    return spec?.defaultValue;
  };
  const required = (name: SettingName): string => {
    const v = value(name);
    if (v === undefined) throw new ConfigError(flagOf(name), 'missing value');
    return v;
  };

  const maxKeyBytes = parseInteger('max-key-bytes', required('max-key-bytes'), 1, STORE_MAX_KEY_BYTES);
  const maxValueBytes = parseInteger('max-value-bytes', required('max-value-bytes'), 0, MAX_VALUE_BYTES_CEILING);
  const maxBatchKeys = parseInteger('max-batch-keys', required('max-batch-keys'), 1, MAX_BATCH_KEYS_CEILING);
  // A reply must be able to hold any key and value the node accepts, or a Get could never return them.
  const maxReplyBytes = parseInteger(
    'max-reply-bytes',
    required('max-reply-bytes'),
    Math.max(1024, maxKeyBytes + maxValueBytes),
    2 ** 31 - 1,
  );
  const topic = parseTopic(required('topic'));
  const brokers = value('kafka-brokers');
  const partitions = parseInteger('partitions', required('partitions'), 1, 100_000);
  const replicationFactorText = value('replication-factor');
  const replicationFactor =
    replicationFactorText === undefined ? null : parseInteger('replication-factor', replicationFactorText, 1, 32767);

  const config: Config = {
    listen: parseListen(required('listen')),
    dataDir: parseDataDir(required('data-dir'), cwd),
    kafka:
      brokers === undefined || brokers.trim() === ''
        ? null
        : { brokers: parseBrokers(brokers), topic, partitions, replicationFactor },
    limits: { maxKeyBytes, maxValueBytes, maxBatchKeys, maxReplyBytes },
    maxRequestBytes: parseInteger('max-request-bytes', required('max-request-bytes'), 64 * 1024, 2 ** 31 - 1),
    maxReplyBytesInFlight: parseInteger(
      'max-reply-bytes-in-flight',
      value('max-reply-bytes-in-flight') ?? String(Math.max(DEFAULT_REPLY_BYTES_IN_FLIGHT, maxReplyBytes)),
      maxReplyBytes,
      Number.MAX_SAFE_INTEGER,
    ),
    requestTimeoutMs: parseInteger('request-timeout-ms', required('request-timeout-ms'), 1, 24 * 3600 * 1000),
    shutdownTimeoutMs: parseInteger('shutdown-timeout-ms', required('shutdown-timeout-ms'), 0, 3600 * 1000),
    maxReadyLag: parseInteger('max-ready-lag', required('max-ready-lag'), 0, Number.MAX_SAFE_INTEGER),
    logLevel: parseLogLevel(required('log-level')),
    metricsListen: parseOptionalListen('metrics-listen', value('metrics-listen')),
    tls: parseTls(value('tls-cert'), value('tls-key'), value('tls-client-ca'), cwd),
    authFile: optionalPath(value('auth-file'), cwd),
  };
  return deepFreeze(config);
}

function parseInteger(name: SettingName, text: string, min: number, max: number): number {
  const trimmed = text.trim();
  const n = /^\d+$/.test(trimmed) ? Number(trimmed) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new ConfigError(flagOf(name), `expected an integer from ${min} to ${max}, got '${text}'`);
  }
  return n;
}

/** `host:port`, `[v6]:port` or `:port` (all interfaces). */
export function parseListen(text: string, name: 'listen' | 'metrics-listen' = 'listen'): ListenAddress {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]*)):(\d{1,5})$/.exec(text.trim());
  const port = match ? Number(match[3]) : Number.NaN;
  if (!match || port > 65535) {
    const example = name === 'listen' ? '127.0.0.1:50051' : '127.0.0.1:9464';
    throw new ConfigError(flagOf(name), `expected host:port (e.g. ${example}), got '${text}'`);
  }
  const host = match[1] ?? (match[2] === '' || match[2] === undefined ? '0.0.0.0' : match[2]);
  return { host, port };
}

/** An optional address: absent or empty means "off". */
function parseOptionalListen(name: 'metrics-listen', text: string | undefined): ListenAddress | null {
  return text === undefined || text.trim() === '' ? null : parseListen(text, name);
}

/** Certificate and key come together; a client CA needs them (mutual TLS is TLS first). Empty means absent. */
function parseTls(
  certText: string | undefined,
  keyText: string | undefined,
  clientCaText: string | undefined,
  cwd: string,
): TlsFiles | null {
  const path = (text: string | undefined): string | null =>
    text === undefined || text.trim() === '' ? null : resolve(cwd, text);
  const [certFile, keyFile, clientCaFile] = [path(certText), path(keyText), path(clientCaText)];
  if (certFile === null && keyFile === null) {
    if (clientCaFile !== null) {
      throw new ConfigError(
        flagOf('tls-client-ca'),
        'mutual TLS needs the server certificate too: give --tls-cert and --tls-key',
      );
    }
    return null;
  }
  if (certFile === null)
    throw new ConfigError(flagOf('tls-cert'), 'missing: --tls-key was given, give its certificate too');
  if (keyFile === null)
    throw new ConfigError(flagOf('tls-key'), 'missing: --tls-cert was given, give its private key too');
  return { certFile, keyFile, clientCaFile };
}

/** An optional file: absent or empty means "off". */
function optionalPath(text: string | undefined, cwd: string): string | null {
  return text === undefined || text.trim() === '' ? null : resolve(cwd, text);
}

function parseDataDir(text: string, cwd: string): string {
  if (text.trim() === '') throw new ConfigError(flagOf('data-dir'), 'must not be empty');
  return isAbsolute(text) ? text : resolve(cwd, text);
}

function parseBrokers(text: string): string[] {
  const brokers = text
    .split(',')
    .map((b) => b.trim())
    .filter((b) => b !== '');
  for (const broker of brokers) {
    if (!/^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(broker)) {
      throw new ConfigError(flagOf('kafka-brokers'), `expected host:port[,host:port...], got '${broker}'`);
    }
  }
  return brokers;
}

/** Kafka's own rule for topic names. */
function parseTopic(text: string): string {
  if (!/^[A-Za-z0-9._-]{1,249}$/.test(text) || text === '.' || text === '..') {
    throw new ConfigError(
      flagOf('topic'),
      `expected 1 to 249 characters of letters, digits, '.', '_' or '-', got '${text}'`,
    );
  }
  return text;
}

function parseLogLevel(text: string): LogLevel {
  const level = LOG_LEVELS.find((l) => l === text.trim().toLowerCase());
  if (level === undefined) {
    throw new ConfigError(flagOf('log-level'), `expected one of ${LOG_LEVELS.join(', ')}, got '${text}'`);
  }
  return level;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
