import { Admin } from '@platformatic/kafka';
import { KafkaCluster as LocalKafka } from '../../scripts/kafka/cluster.js';
import { CLIENT_CORE, registerCleanup, runChecked, SERVER_CORE } from '../lib/processes.js';

/** A one-broker Kafka from the repository's runner (scripts/kafka/) in a private state dir, pinned to the server core. */
export interface KafkaCluster {
  readonly brokers: string;
  readonly stateDir: string;
  /** Kafka's jars and a quiet Log4j configuration, to run Kafka's own tools against the broker. */
  readonly classpath: string;
  readonly toolsLog4jFile: string;
  brokerPids(): number[];
  down(): Promise<void>;
}

export async function kafkaUp(stateDir: string): Promise<KafkaCluster> {
  const cluster = await LocalKafka.start({
    stateDir,
    brokers: 1,
    commandPrefix: ['taskset', '-c', String(SERVER_CORE)],
  });
  // Also on Ctrl-C or a failure; the brokers die with this process anyway, this deletes their data.
  const unregister = registerCleanup(() => cluster.stop());
  return {
    brokers: cluster.bootstrap,
    stateDir,
    classpath: cluster.classpath,
    toolsLog4jFile: cluster.toolsLog4jFile,
    brokerPids: () => cluster.brokerPids(),
    down: async () => {
      unregister();
      await cluster.stop();
    },
  };
}

export async function createTopic(cluster: KafkaCluster, topic: string, partitions: number): Promise<void> {
  const admin = new Admin({ clientId: 'kvs2-bench-admin', bootstrapBrokers: cluster.brokers.split(',') });
  try {
    if ((await admin.listTopics()).includes(topic)) return;
    await admin.createTopics({ topics: [topic], partitions, replicas: 1 });
  } finally {
    await admin.close();
  }
}

export interface ProducerPerfResult {
  readonly records: number;
  readonly recordsPerSec: number;
  readonly avgMs: number;
  readonly maxMs: number;
  readonly p50Ms: number;
  readonly p95Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
}

/**
 * Kafka's own ProducerPerformance, acks=all, as fast as it can, on the client core. Run with a plain
 * JVM (full JIT) rather than the runner's tool settings (C1 only), which are tuned for quick tools.
 */
export async function producerPerformance(
  cluster: KafkaCluster,
  topic: string,
  records: number,
  recordBytes: number,
): Promise<ProducerPerfResult> {
  const result = await runChecked(
    'java',
    [
      '-Xmx512m',
      `-Dlog4j2.configurationFile=${cluster.toolsLog4jFile}`,
      '-cp',
      cluster.classpath,
      'org.apache.kafka.tools.ProducerPerformance',
      '--topic',
      topic,
      '--num-records',
      String(records),
      '--record-size',
      String(recordBytes),
      '--throughput',
      '-1',
      '--producer-props',
      `bootstrap.servers=${cluster.brokers}`,
      'acks=all',
    ],
    { core: CLIENT_CORE, timeoutMs: 10 * 60_000 },
  );
  const summary = result.stdout
    .trim()
    .split('\n')
    .reverse()
    .find((l) => l.includes('records sent') && l.includes('99.9th'));
  const m =
    summary &&
    /(\d+) records sent, ([\d.]+) records\/sec .*?, ([\d.]+) ms avg latency, ([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99\.9th/.exec(
      summary,
    );
  if (!m) throw new Error(`unexpected ProducerPerformance output: ${result.stdout.slice(-500)}`);
  const n = (i: number) => Number(m[i]);
  return {
    records: n(1),
    recordsPerSec: n(2),
    avgMs: n(3),
    maxMs: n(4),
    p50Ms: n(5),
    p95Ms: n(6),
    p99Ms: n(7),
    p999Ms: n(8),
  };
}

/** Produces lines `key\tvalue` with kcat: Java-compatible murmur2 partitioning (as kvs2), acks=all. */
export async function kcatProduce(
  cluster: KafkaCluster,
  topic: string,
  lines: AsyncIterable<Buffer>,
  core: number = CLIENT_CORE,
): Promise<{ seconds: number }> {
  const result = await runChecked(
    'kcat',
    [
      '-P',
      '-b',
      cluster.brokers,
      '-t',
      topic,
      '-K',
      '\\t',
      '-X',
      'topic.partitioner=murmur2_random',
      '-X',
      'acks=all',
      '-X',
      'linger.ms=5',
    ],
    { core, timeoutMs: 20 * 60_000, input: lines },
  );
  return { seconds: result.seconds };
}

/** Reads the whole topic from the beginning to its end with kcat; returns records and seconds. */
export async function kcatConsumeAll(
  cluster: KafkaCluster,
  topic: string,
): Promise<{ records: number; seconds: number }> {
  const result = await runChecked(
    'kcat',
    ['-C', '-b', cluster.brokers, '-t', topic, '-o', 'beginning', '-e', '-q', '-f', '\\n'],
    { core: CLIENT_CORE, timeoutMs: 20 * 60_000 },
  );
  let records = 0;
  for (let i = result.stdout.indexOf('\n'); i >= 0; i = result.stdout.indexOf('\n', i + 1)) records++;
  return { records, seconds: result.seconds };
}
