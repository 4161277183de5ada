import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { type ClusterSecurity, KafkaCluster } from './cluster.js';

/**
 * `npm run kafka -- <command>`: a local Apache Kafka cluster for development, tests and benchmarks.
 * `up` prints exactly one stdout line, KAFKA_BROKERS=127.0.0.1:port[,...], once every broker accepts
 * requests; everything else goes to stderr.
 */

/** The repository root: this file runs as dist/scripts/kafka/cli.js. */
const REPO_DIR = fileURLToPath(new URL('../../../', import.meta.url));
const env = process.env;
const stateDir = env.KVS2_KAFKA_STATE || join(REPO_DIR, '.kafka');
const log = (line: string) => process.stderr.write(`kafka: ${line}\n`);

async function attached(): Promise<KafkaCluster> {
  const cluster = await KafkaCluster.attach(stateDir, log);
  if (cluster === undefined) throw new Error(`no cluster in ${stateDir}`);
  return cluster;
}

function brokerId(value: string): number {
  const id = Number(value);
  if (!Number.isInteger(id) || id < 1) throw new InvalidArgumentError('a broker id is a number from 1');
  return id;
}

const words = (value: string | undefined) => (value ?? '').split(/\s+/).filter((w) => w !== '');

/** How to reach the secure listeners, for people: never the password, only the file that holds it. */
function securityLines(security: ClusterSecurity): string[] {
  return [
    `SASL_SSL listeners ${security.saslSslBootstrap} (${security.saslMechanisms.join(', ')})`,
    `SSL listeners ${security.sslBootstrap} (mutual TLS: a client certificate signed by the CA is required)`,
    `SASL user ${security.username}, password in ${security.passwordFile}`,
    `CA certificate ${security.caFile}`,
    `client certificate ${security.clientCertFile}, key ${security.clientKeyFile}`,
  ];
}

const program = new Command('npm run kafka --')
  .description('Run Apache Kafka brokers (KRaft, from Maven Central jars) on 127.0.0.1')
  .addHelpText(
    'after',
    `
Environment:
  KVS2_KAFKA_STATE        state dir (config, pids, data, logs); default <repo>/.kafka. One cluster per dir.
  KVS2_KAFKA_CACHE        Kafka's jar cache; default ~/.cache/kvs2/kafka-<version>
  KVS2_KAFKA_TIMEOUT      seconds to wait for brokers to accept requests (default 90)
  KVS2_KAFKA_HEAP_OPTS    JVM heap options per broker (default depends on the number of brokers)
  KVS2_KAFKA_EXTRA_PROPS  extra broker properties, one key=value per line, for every node
  KVS2_KAFKA_SECURE       1: as up --secure
  JAVA_HOME               a JDK 17+ to use instead of java on PATH`,
  );

program
  .command('up')
  .description('start N combined broker+controller nodes and print KAFKA_BROKERS=...; reuses a running one of size N')
  .option('--brokers <n>', 'number of brokers, 1..9', (v) => Number(v), 1)
  .option(
    '--secure',
    'also a SASL_SSL listener (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512; user kvs2) and an SSL listener (client ' +
      'certificate required) on every broker, with a CA, certificates and a password made in <state dir>/security/',
  )
  .action(async ({ brokers, secure }: { brokers: number; secure?: boolean }) => {
    const stop = new AbortController();
    // The brokers run detached: a Ctrl-C during start-up must still remove what this start made.
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => stop.abort());
    const cluster = await KafkaCluster.start({
      stateDir,
      brokers,
      secure: secure === true || env.KVS2_KAFKA_SECURE === '1',
      extraProperties: (env.KVS2_KAFKA_EXTRA_PROPS ?? '').split('\n').filter((l) => l.trim() !== ''),
      ...(env.KVS2_KAFKA_HEAP_OPTS ? { heapOptions: words(env.KVS2_KAFKA_HEAP_OPTS) } : {}),
      ...(env.KVS2_KAFKA_CACHE ? { cacheDir: env.KVS2_KAFKA_CACHE } : {}),
      ...(env.JAVA_HOME ? { javaHome: env.JAVA_HOME } : {}),
      ...(env.KVS2_KAFKA_TIMEOUT ? { readyTimeoutMs: Number(env.KVS2_KAFKA_TIMEOUT) * 1000 } : {}),
      detached: true,
      signal: stop.signal,
      log,
    });
    if (cluster.security !== undefined) for (const line of securityLines(cluster.security)) log(line);
    process.stdout.write(`KAFKA_BROKERS=${cluster.bootstrap}\n`);
  });

program
  .command('down')
  .description('stop the cluster (SIGTERM, then SIGKILL) and delete its data; the logs stay')
  .action(async () => {
    const cluster = await KafkaCluster.attach(stateDir, log);
    if (cluster === undefined) {
      log(`no cluster in ${stateDir}`);
      return;
    }
    await cluster.stop();
    log(`stopped; data removed (logs kept in ${join(stateDir, 'logs')})`);
  });

program
  .command('status')
  .description('show brokers, pids and ports; exit 0 when all run, 2 when some do, 1 when none does')
  .action(async () => {
    const cluster = await KafkaCluster.attach(stateDir, log);
    if (cluster === undefined) {
      console.log(`no Kafka cluster (state dir: ${stateDir})`);
      process.exitCode = 1;
      return;
    }
    const brokers = await cluster.status();
    console.log(`Kafka cluster ${cluster.clusterId}, ${cluster.size} broker(s), state ${stateDir}`);
    for (const b of brokers) {
      const secure = b.saslSslPort === undefined ? '' : `, SASL_SSL port ${b.saslSslPort}, SSL port ${b.sslPort}`;
      const ports = `broker port ${b.brokerPort}, controller port ${b.controllerPort}${secure}`;
      console.log(`broker ${b.id}: ${b.running ? `running, pid ${b.pid}` : 'stopped'}, ${ports}`);
    }
    if (cluster.security !== undefined) for (const line of securityLines(cluster.security)) console.log(line);
    console.log(`KAFKA_BROKERS=${cluster.bootstrap}`);
    const up = brokers.filter((b) => b.running).length;
    process.exitCode = up === brokers.length ? 0 : up === 0 ? 1 : 2;
  });

const brokerCommands = [
  ['stop-broker', 'kill broker ID with SIGKILL, as a crash would', (c, id) => c.stopBroker(id)],
  [
    'start-broker',
    'restart broker ID with its ports and data; waits until it is registered',
    (c, id) => c.startBroker(id),
  ],
  [
    'pause-broker',
    'freeze broker ID with SIGSTOP (a hung broker: connections open, no answers)',
    (c, id) => c.pauseBroker(id),
  ],
  ['resume-broker', 'let a paused broker ID run again (SIGCONT)', (c, id) => c.resumeBroker(id)],
] as const satisfies ReadonlyArray<readonly [string, string, (c: KafkaCluster, id: number) => Promise<void>]>;
for (const [name, description, action] of brokerCommands) {
  program
    .command(name)
    .description(description)
    .argument('<id>', 'broker id, 1..N', brokerId)
    .action(async (id: number) => {
      await action(await attached(), id);
      log(`${name} ${id}: done`);
    });
}

try {
  await program.parseAsync();
} catch (error) {
  if (error instanceof Error && error.name === 'AbortError') {
    log('interrupted; the brokers this start had started are stopped');
    process.exitCode = 130;
  } else {
    log(`error: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  }
}
