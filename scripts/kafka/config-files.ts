/** The configuration files of a local cluster: one properties file per node, Log4j 2 for brokers and tools. */

/** Bind and advertise loopback only: clients must be able to reach exactly what is advertised. */
export const HOST = '127.0.0.1';

export interface NodePorts {
  readonly id: number;
  readonly brokerPort: number;
  readonly controllerPort: number;
  /** The SASL_SSL and SSL listeners' ports, on a cluster started with secure listeners only. */
  readonly saslSslPort?: number;
  readonly sslPort?: number;
}

/** What the secure listeners need: the PEM key and trust stores and the SASL user's credentials. */
export interface SecureListenerConfig {
  readonly keystoreFile: string;
  readonly truststoreFile: string;
  readonly username: string;
  readonly password: string;
}

/** A combined KRaft node (broker and controller in one JVM) with a static controller quorum. */
export function brokerProperties(
  node: NodePorts,
  all: readonly NodePorts[],
  dataDir: string,
  extra: readonly string[],
  secure?: SecureListenerConfig,
): string {
  const n = all.length;
  const rf3 = Math.min(n, 3);
  const isr2 = Math.min(n, 2);
  const clientListeners = [`PLAINTEXT://${HOST}:${node.brokerPort}`, ...secureListeners(node, secure)];
  const lines = [
    '# Generated for a throwaway local cluster; edits are lost on the next `up`.',
    'process.roles=broker,controller',
    `node.id=${node.id}`,
    `controller.quorum.voters=${all.map((v) => `${v.id}@${HOST}:${v.controllerPort}`).join(',')}`,
    `listeners=${[...clientListeners, `CONTROLLER://${HOST}:${node.controllerPort}`].join(',')}`,
    `advertised.listeners=${clientListeners.join(',')}`,
    `listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT${secure === undefined ? '' : ',SASL_SSL:SASL_SSL,SSL:SSL'}`,
    'controller.listener.names=CONTROLLER',
    'inter.broker.listener.name=PLAINTEXT',
    `log.dirs=${dataDir}`,
    // Replication matched to the cluster size, so that internal topics can be created at all.
    `default.replication.factor=${n >= 3 ? 3 : 1}`,
    `min.insync.replicas=${n >= 3 ? 2 : 1}`,
    `offsets.topic.replication.factor=${rf3}`,
    `transaction.state.log.replication.factor=${rf3}`,
    `transaction.state.log.min.isr=${isr2}`,
    `share.coordinator.state.topic.replication.factor=${rf3}`,
    `share.coordinator.state.topic.min.isr=${isr2}`,
    // Internal topics with 5 partitions instead of 50 are created much faster on a small machine.
    'offsets.topic.num.partitions=5',
    'transaction.state.log.num.partitions=5',
    // A writer that dies mid-transaction stalls its partition's readers until the coordinator notices the
    // transaction timed out: it looks every second instead of every 10 s (docs/cas-on-kafka.md, claim 5).
    'transaction.abort.timed.out.transaction.cleanup.interval.ms=1000',
    // Fast tests: no rebalance delay, explicit topic creation only, a log cleaner that looks for work
    // every second (compaction tests) with a dedupe buffer that fits a small heap, fewer threads.
    'group.initial.rebalance.delay.ms=0',
    'num.partitions=1',
    'auto.create.topics.enable=false',
    'delete.topic.enable=true',
    'log.cleaner.backoff.ms=1000',
    'log.cleaner.dedupe.buffer.size=33554432',
    'num.network.threads=2',
    'num.io.threads=4',
  ];
  if (secure !== undefined) lines.push(...securityLines(secure));
  if (extra.length > 0) lines.push('# Extra properties given by the caller', ...extra);
  return `${lines.join('\n')}\n`;
}

/**
 * Two client listeners more on a secure cluster: SASL_SSL (PLAIN and SCRAM for one user, server-authenticated
 * TLS) and SSL with client certificates required. PLAINTEXT stays for inter-broker traffic and the runner's
 * readiness check, and the controllers keep theirs.
 */
function secureListeners(node: NodePorts, secure: SecureListenerConfig | undefined): string[] {
  if (secure === undefined) return [];
  if (node.saslSslPort === undefined || node.sslPort === undefined) {
    throw new Error(`broker ${node.id} has no ports for its secure listeners`);
  }
  return [`SASL_SSL://${HOST}:${node.saslSslPort}`, `SSL://${HOST}:${node.sslPort}`];
}

function securityLines(secure: SecureListenerConfig): string[] {
  const scram = 'org.apache.kafka.common.security.scram.ScramLoginModule required;';
  return [
    '# Secure listeners; the SCRAM credentials live in the cluster metadata, written when storage was formatted',
    // Kafka reads an unencrypted PKCS#8 key from a PEM key store, so no key password is needed.
    'ssl.keystore.type=PEM',
    `ssl.keystore.location=${secure.keystoreFile}`,
    'ssl.truststore.type=PEM',
    `ssl.truststore.location=${secure.truststoreFile}`,
    'listener.name.ssl.ssl.client.auth=required',
    'sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512',
    `listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_${secure.username}="${secure.password}";`,
    `listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=${scram}`,
    `listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=${scram}`,
  ];
}

/** Brokers: INFO into one file per broker (named by a system property), chatty loggers at WARN. */
export const BROKER_LOG4J = `status = warn
name = kvs2-kafka-broker
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = \${sys:kvs2.broker.log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
`;

/** Tools: warnings and errors only, to stderr, since their real output is on stdout. */
export const TOOLS_LOG4J = `status = warn
name = kvs2-kafka-tools
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
`;
