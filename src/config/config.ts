import { availableParallelism } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { ConfigError } from './config-error.js';
import { MAX_BATCH_KEYS_CEILING, MAX_VALUE_BYTES_CEILING, STORE_MAX_KEY_BYTES } from './limits.js';
import { Secret } from './secret.js';

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
  /** How keys are spread over partitions: Kafka's murmur2 of the whole key, or of its hash tag if it has one. */
  readonly partitioner: KafkaPartitioner;
  readonly security: KafkaSecurity;
}

export const KAFKA_PARTITIONERS = ['murmur2', 'hash-tags'] as const;
export type KafkaPartitioner = (typeof KAFKA_PARTITIONERS)[number];

export const KAFKA_SECURITY_PROTOCOLS = ['PLAINTEXT', 'SSL', 'SASL_PLAINTEXT', 'SASL_SSL'] as const;
export type KafkaSecurityProtocol = (typeof KAFKA_SECURITY_PROTOCOLS)[number];
export const KAFKA_SASL_MECHANISMS = ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512'] as const;
export type KafkaSaslMechanism = (typeof KAFKA_SASL_MECHANISMS)[number];

/** How the node reaches the brokers: Kafka's own `security.protocol`, with what TLS and SASL need. */
export interface KafkaSecurity {
  readonly protocol: KafkaSecurityProtocol;
  /** Present exactly when the protocol is SSL or SASL_SSL. */
  readonly tls: KafkaTlsFiles | null;
  /** Present exactly when the protocol is SASL_PLAINTEXT or SASL_SSL. */
  readonly sasl: KafkaSasl | null;
}

/** PEM files for TLS to the brokers, read at start-up. */
export interface KafkaTlsFiles {
  /** CA certificates the brokers' certificates must chain to; null trusts Node's bundled CAs. */
  readonly caFile: string | null;
  /** The node's own certificate chain and key, for brokers that require client certificates; both or neither. */
  readonly certFile: string | null;
  readonly keyFile: string | null;
}

export interface KafkaSasl {
  readonly mechanism: KafkaSaslMechanism;
  readonly username: string;
  /**
   * Where the password comes from: a file, re-read for every new connection (so it can be rotated without a
   * restart), or the environment variable, read once. Never a flag: command lines are visible to every user
   * of the machine and end up in shell histories.
   */
  readonly password: { readonly file: string } | { readonly env: string; readonly value: Secret };
}

const KAFKA_SECURITY_SETTINGS = [
  'kafka-security-protocol',
  'kafka-tls-ca',
  'kafka-tls-cert',
  'kafka-tls-key',
  'kafka-sasl-mechanism',
  'kafka-sasl-username',
  'kafka-sasl-password-file',
] as const;

/** The environment variable that may hold the Kafka SASL password (there is no flag for it). */
export const KAFKA_SASL_PASSWORD_ENV = 'KVS2_KAFKA_SASL_PASSWORD';

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
  /**
   * How long the receiver of a snapshot or store image this node sends may take nothing before the node ends
   * the transfer and removes its copy: a progress limit, not a deadline for the whole transfer.
   */
  readonly snapshotSendStallTimeoutMs: number;
  /** After the first catch-up, records behind the log's end beyond which the node is not ready; 0: off. */
  readonly maxReadyLag: number;
  /** Worker threads serving gRPC on the node's port (cli/serve-workers); 0: the main thread serves. */
  readonly serveWorkers: number;
  readonly logLevel: LogLevel;
  /** Where the HTTP listener for /metrics, /livez and /readyz listens; null: no listener, no metrics. */
  readonly metricsListen: ListenAddress | null;
  /** TLS on the gRPC server; null serves plaintext. */
  readonly tls: TlsFiles | null;
  /** Absolute path of the tokens-and-permissions file (re-read on SIGHUP); null: no auth, every call allowed. */
  readonly authFile: string | null;
  /** Peers whose snapshot an empty node loads before reading the log (Kafka only); null: read the whole log. */
  readonly bootstrap: PeerBootstrapConfig | null;
  /**
   * Whether a node that starts on an empty store rewrites it in key order once the topic or a peer's snapshot
   * filled it, before it serves, when that pays (replica/compacting-bootstrap.ts). Kafka only.
   */
  readonly compactAfterBootstrap: boolean;
}

export interface PeerBootstrapConfig {
  /** `host:port` of each peer's gRPC, tried in order. */
  readonly peers: readonly string[];
  /** TLS to the peers, trusting this CA file (the node's own --tls-cert/--tls-key then answer mutual TLS); null: plaintext. */
  readonly tlsCaFile: string | null;
  /** A file holding the bearer token sent to peers that run with --auth-file; null: none. */
  readonly tokenFile: string | null;
  /**
   * How long a peer may send nothing (before its first byte, or between two mid-image) before it is given
   * up and the next one tried: a progress limit, not a deadline for the whole image.
   */
  readonly stallTimeoutMs: number;
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
/** More threads than this buys nothing on any machine kvs2 targets, and each costs ~10 MiB of heap. */
const MAX_SERVE_WORKERS = 64;

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
    name: 'kafka-partitioner',
    valueName: 'name',
    description:
      "murmur2 (Kafka producers' default: the whole key), or hash-tags (a key with {tag} goes where its tag does, " +
      'so a conditional Write may span keys sharing a tag); every node and producer of the topic must agree',
    defaultValue: 'murmur2',
  },
  {
    name: 'replication-factor',
    valueName: 'n',
    description: 'replication factor of the Kafka topic when kvs2 creates it (default: min(3, brokers))',
  },
  {
    name: 'kafka-security-protocol',
    valueName: 'protocol',
    description:
      `how to reach the brokers, as Kafka's security.protocol: ${KAFKA_SECURITY_PROTOCOLS.join(', ')} ` +
      '(default: SASL_SSL with --kafka-sasl-mechanism, else SSL with a --kafka-tls-* file, else PLAINTEXT)',
  },
  {
    name: 'kafka-tls-ca',
    valueName: 'file',
    description: "PEM CA certificates the brokers' certificates must chain to (default: Node's bundled CAs)",
  },
  {
    name: 'kafka-tls-cert',
    valueName: 'file',
    description: 'PEM certificate chain this node presents to brokers that require client certificates',
  },
  { name: 'kafka-tls-key', valueName: 'file', description: 'PEM private key of --kafka-tls-cert' },
  {
    name: 'kafka-sasl-mechanism',
    valueName: 'mechanism',
    description: `SASL mechanism for the brokers: ${KAFKA_SASL_MECHANISMS.join(', ')}`,
  },
  { name: 'kafka-sasl-username', valueName: 'name', description: 'SASL user name' },
  {
    name: 'kafka-sasl-password-file',
    valueName: 'file',
    description:
      `file holding the SASL password, re-read for each new connection (or set ${KAFKA_SASL_PASSWORD_ENV}; ` +
      'there is no flag for the password itself)',
  },
  {
    name: 'bootstrap-from',
    valueName: 'host:port,...',
    description:
      "peers whose store an empty node installs first (a copy of the peer's store file), then reading the topic only from the snapshot's offsets (Kafka only; default: read the whole topic)",
  },
  {
    name: 'bootstrap-tls-ca',
    valueName: 'file',
    description:
      "reach --bootstrap-from peers over TLS, trusting these PEM CAs (the node's --tls-cert/--tls-key answer mutual TLS)",
  },
  {
    name: 'bootstrap-token-file',
    valueName: 'file',
    description:
      'file holding the bearer token sent to --bootstrap-from peers that run with --auth-file (needs read on every key)',
  },
  {
    name: 'bootstrap-stall-timeout-ms',
    valueName: 'ms',
    description:
      'give up on a --bootstrap-from peer that sends nothing for this long, before its first byte (which follows its copy of its store, ~1 s per GB) or mid-image, and try the next peer or the topic',
    defaultValue: '60000',
  },
  {
    name: 'compact-after-bootstrap',
    valueName: 'on|off',
    description:
      "on: a node that starts on an empty store rewrites it in key order once filled (the topic read, or a peer's snapshot installed), before it listens, when its pages are under 85% of a key-ordered fill (about half the read again; a store about 40% smaller, in disk, memory and the store image peers bootstrapping from it get) (Kafka only)",
    defaultValue: 'off',
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
    name: 'snapshot-send-stall-timeout-ms',
    valueName: 'ms',
    description:
      "end a snapshot or store image this node sends (to a backup or a bootstrapping peer) when the receiver takes nothing of it for this long, and remove the image's copy; a receiver that keeps reading, however slowly, is never cut off",
    defaultValue: '60000',
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
    name: 'serve-workers',
    valueName: 'n|auto',
    description:
      'threads that serve gRPC on the port, reading the store the replica writes (0: the main thread serves, beside ' +
      'the replica; auto: one per core but one, from 4 cores on, at most 8)',
    defaultValue: 'auto',
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

/**
 * Validates raw settings into a frozen Config, or throws a ConfigError naming the first bad setting. `env`
 * is read only for the one secret that has no flag (KVS2_KAFKA_SASL_PASSWORD).
 */
export function parseConfig(
  raw: RawSettings,
  cwd: string = process.cwd(),
  env: Readonly<Record<string, string | undefined>> = process.env,
): Config {
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

  const security = parseKafkaSecurity(value, cwd, env);
  const noBrokers = brokers === undefined || brokers.trim() === '';
  if (noBrokers) {
    // Security settings for a Kafka that is not used would be dropped without a word: say so instead.
    const stray = KAFKA_SECURITY_SETTINGS.find((name) => (value(name) ?? '').trim() !== '');
    if (stray !== undefined) throw new ConfigError(flagOf(stray), 'is for Kafka, but --kafka-brokers is not given');
  }

  const config: Config = {
    listen: parseListen(required('listen')),
    dataDir: parseDataDir(required('data-dir'), cwd),
    kafka: noBrokers
      ? null
      : {
          brokers: parseAddresses('kafka-brokers', brokers),
          topic,
          partitions,
          replicationFactor,
          partitioner: parsePartitioner(required('kafka-partitioner')),
          security,
        },
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
    snapshotSendStallTimeoutMs: parseInteger(
      'snapshot-send-stall-timeout-ms',
      required('snapshot-send-stall-timeout-ms'),
      1,
      2 ** 31 - 1,
    ),
    maxReadyLag: parseInteger('max-ready-lag', required('max-ready-lag'), 0, Number.MAX_SAFE_INTEGER),
    serveWorkers: parseServeWorkers(required('serve-workers')),
    logLevel: parseLogLevel(required('log-level')),
    metricsListen: parseOptionalListen('metrics-listen', value('metrics-listen')),
    tls: parseTls(value('tls-cert'), value('tls-key'), value('tls-client-ca'), cwd),
    authFile: optionalPath(value('auth-file'), cwd),
    bootstrap: parseBootstrap(value, cwd, noBrokers),
    compactAfterBootstrap: parseCompactAfterBootstrap(required('compact-after-bootstrap'), noBrokers),
  };
  return deepFreeze(config);
}

function parseServeWorkers(text: string): number {
  if (text.trim() === 'auto') return serveWorkersFor(availableParallelism());
  return parseInteger('serve-workers', text, 0, MAX_SERVE_WORKERS);
}

/**
 * `--serve-workers auto`: the main thread (log, replica, the store's writer) keeps a core of its own, so
 * workers only from 4 cores on. Measured on 2 cores (docs/benchmarks.md, "Serving workers"): 2 workers
 * serve 2.1x the Gets, but a Set pays a hop (+0.2 ms; 0.77-0.95x the Sets at 64 in flight), the main thread
 * sharing the cores with them.
 */
export function serveWorkersFor(cores: number): number {
  return cores >= 4 ? Math.min(cores - 1, 8) : 0;
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

/**
 * The protocol is inferred from what is given, never towards less safety: a SASL mechanism alone means
 * SASL_SSL, a TLS file alone SSL. SASL_PLAINTEXT (passwords a network observer can read with PLAIN) only
 * when asked for by name. Settings the protocol would ignore are refused rather than silently dropped.
 */
function parseKafkaSecurity(
  value: (name: SettingName) => string | undefined,
  cwd: string,
  env: Readonly<Record<string, string | undefined>>,
): KafkaSecurity {
  const given = (name: SettingName): string | null => {
    const text = value(name);
    return text === undefined || text.trim() === '' ? null : text.trim();
  };
  const path = (name: SettingName): string | null => {
    const text = given(name);
    return text === null ? null : resolve(cwd, text);
  };
  const [caFile, certFile, keyFile] = [path('kafka-tls-ca'), path('kafka-tls-cert'), path('kafka-tls-key')];
  const mechanismText = given('kafka-sasl-mechanism');
  const username = given('kafka-sasl-username');
  const passwordFile = path('kafka-sasl-password-file');
  const passwordEnv = env[KAFKA_SASL_PASSWORD_ENV];
  const anyTls = caFile !== null || certFile !== null || keyFile !== null;
  const anySasl = mechanismText !== null || username !== null || passwordFile !== null;

  const protocolText = given('kafka-security-protocol');
  let protocol: KafkaSecurityProtocol;
  if (protocolText === null) protocol = anySasl ? 'SASL_SSL' : anyTls ? 'SSL' : 'PLAINTEXT';
  else {
    const named = KAFKA_SECURITY_PROTOCOLS.find((p) => p === protocolText.toUpperCase());
    if (named === undefined) {
      throw new ConfigError(
        flagOf('kafka-security-protocol'),
        `expected one of ${KAFKA_SECURITY_PROTOCOLS.join(', ')}, got '${protocolText}'`,
      );
    }
    protocol = named;
  }
  const usesTls = protocol === 'SSL' || protocol === 'SASL_SSL';
  const usesSasl = protocol === 'SASL_PLAINTEXT' || protocol === 'SASL_SSL';

  if (anyTls && !usesTls) {
    const first = caFile !== null ? 'kafka-tls-ca' : certFile !== null ? 'kafka-tls-cert' : 'kafka-tls-key';
    throw new ConfigError(flagOf(first), `needs TLS, but --kafka-security-protocol is ${protocol}`);
  }
  if ((certFile === null) !== (keyFile === null)) {
    throw certFile === null
      ? new ConfigError(flagOf('kafka-tls-cert'), 'missing: --kafka-tls-key was given, give its certificate too')
      : new ConfigError(flagOf('kafka-tls-key'), 'missing: --kafka-tls-cert was given, give its private key too');
  }
  if (anySasl && !usesSasl) {
    const first =
      mechanismText !== null
        ? 'kafka-sasl-mechanism'
        : username !== null
          ? 'kafka-sasl-username'
          : 'kafka-sasl-password-file';
    throw new ConfigError(flagOf(first), `needs SASL, but --kafka-security-protocol is ${protocol}`);
  }
  let sasl: KafkaSasl | null = null;
  if (usesSasl) {
    if (mechanismText === null) {
      throw new ConfigError(flagOf('kafka-sasl-mechanism'), `missing: ${protocol} needs a SASL mechanism`);
    }
    const mechanism = KAFKA_SASL_MECHANISMS.find((m) => m === mechanismText.toUpperCase());
    if (mechanism === undefined) {
      throw new ConfigError(
        flagOf('kafka-sasl-mechanism'),
        `expected one of ${KAFKA_SASL_MECHANISMS.join(', ')}, got '${mechanismText}'`,
      );
    }
    if (username === null)
      throw new ConfigError(flagOf('kafka-sasl-username'), `missing: ${mechanism} needs a user name`);
    const hasEnv = passwordEnv !== undefined && passwordEnv !== '';
    if (passwordFile !== null && hasEnv) {
      throw new ConfigError(
        flagOf('kafka-sasl-password-file'),
        `given together with ${KAFKA_SASL_PASSWORD_ENV}: give the password one way only`,
      );
    }
    if (passwordFile === null && !hasEnv) {
      throw new ConfigError(
        flagOf('kafka-sasl-password-file'),
        `missing: give the SASL password in a file, or in ${KAFKA_SASL_PASSWORD_ENV}`,
      );
    }
    sasl = {
      mechanism,
      username,
      password:
        passwordFile !== null
          ? { file: passwordFile }
          : { env: KAFKA_SASL_PASSWORD_ENV, value: new Secret(passwordEnv as string) },
    };
  }
  return { protocol, tls: usesTls ? { caFile, certFile, keyFile } : null, sasl };
}

function parseBootstrap(
  value: (name: SettingName) => string | undefined,
  cwd: string,
  noBrokers: boolean,
): PeerBootstrapConfig | null {
  const peersText = (value('bootstrap-from') ?? '').trim();
  const tlsCaFile = optionalPath(value('bootstrap-tls-ca'), cwd);
  const tokenFile = optionalPath(value('bootstrap-token-file'), cwd);
  if (peersText === '') {
    if (tlsCaFile !== null)
      throw new ConfigError(flagOf('bootstrap-tls-ca'), 'is for --bootstrap-from, which is not given');
    if (tokenFile !== null) {
      throw new ConfigError(flagOf('bootstrap-token-file'), 'is for --bootstrap-from, which is not given');
    }
    return null;
  }
  if (noBrokers) {
    throw new ConfigError(
      flagOf('bootstrap-from'),
      'needs --kafka-brokers: nodes on embedded logs share no log, so a peer snapshot cannot be continued; restore one with kvs2 snapshot restore',
    );
  }
  const stallTimeoutMs = parseInteger(
    'bootstrap-stall-timeout-ms',
    value('bootstrap-stall-timeout-ms') ?? '',
    1,
    2 ** 31 - 1,
  );
  return { peers: parseAddresses('bootstrap-from', peersText), tlsCaFile, tokenFile, stallTimeoutMs };
}

function parseCompactAfterBootstrap(text: string, noBrokers: boolean): boolean {
  const on = { on: true, off: false }[text.trim().toLowerCase()];
  if (on === undefined) throw new ConfigError(flagOf('compact-after-bootstrap'), `expected on or off, got '${text}'`);
  if (on && noBrokers) {
    throw new ConfigError(
      flagOf('compact-after-bootstrap'),
      'needs --kafka-brokers: a node on the embedded log never reads a whole log into an empty store; kvs2 compact rewrites a stopped one',
    );
  }
  return on;
}

/** An optional file: absent or empty means "off". */
function optionalPath(text: string | undefined, cwd: string): string | null {
  return text === undefined || text.trim() === '' ? null : resolve(cwd, text);
}

function parseDataDir(text: string, cwd: string): string {
  if (text.trim() === '') throw new ConfigError(flagOf('data-dir'), 'must not be empty');
  return isAbsolute(text) ? text : resolve(cwd, text);
}

/** A comma-separated list of `host:port` (a host name, an IPv4 address or a bracketed IPv6 one). */
function parseAddresses(name: 'kafka-brokers' | 'bootstrap-from', text: string): string[] {
  const addresses = text
    .split(',')
    .map((address) => address.trim())
    .filter((address) => address !== '');
  for (const address of addresses) {
    if (!/^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(address)) {
      throw new ConfigError(flagOf(name), `expected host:port[,host:port...], got '${address}'`);
    }
  }
  return addresses;
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

function parsePartitioner(text: string): KafkaPartitioner {
  const partitioner = KAFKA_PARTITIONERS.find((p) => p === text.trim().toLowerCase());
  if (partitioner === undefined) {
    throw new ConfigError(
      flagOf('kafka-partitioner'),
      `expected one of ${KAFKA_PARTITIONERS.join(', ')}, got '${text}'`,
    );
  }
  return partitioner;
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
