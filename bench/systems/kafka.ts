import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { CLIENT_CORE, registerCleanup, run, runChecked, SERVER_CORE } from '../lib/processes.js';
import { treePath } from '../lib/tree.js';

const kafkaSh = () => treePath('scripts/kafka.sh');

/** A one-broker Kafka from scripts/kafka.sh in a private state dir, pinned to the server core. */
export interface KafkaCluster {
  readonly brokers: string;
  readonly stateDir: string;
  brokerPids(): number[];
  down(): Promise<void>;
}

export async function kafkaUp(stateDir: string): Promise<KafkaCluster> {
  const env = { ...process.env, KVS2_KAFKA_STATE: stateDir };
  const down = async () => {
    await run(kafkaSh(), ['down'], { env, timeoutMs: 120_000 });
  };
  // Also on Ctrl-C or a failure: the broker runs in its own session and would outlive us.
  const unregister = registerCleanup(down);
  const cluster: KafkaCluster = {
    brokers: '',
    stateDir,
    brokerPids: () => {
      try {
        return [Number(readFileSync(join(stateDir, 'broker-1.pid'), 'utf8').trim())];
      } catch {
        return [];
      }
    },
    down: async () => {
      unregister();
      await down();
    },
  };
  // taskset on the script: the broker JVM it starts inherits the core.
  const up = await run(kafkaSh(), ['up'], { env, core: SERVER_CORE, timeoutMs: 15 * 60_000 });
  const line = up.stdout.split('\n').find((l) => l.startsWith('KAFKA_BROKERS='));
  if (up.code !== 0 || line === undefined) {
    await cluster.down();
    throw new Error(`scripts/kafka.sh up failed (${up.code}): ${up.stderr.trim().split('\n').slice(-5).join(' | ')}`);
  }
  return { ...cluster, brokers: line.slice('KAFKA_BROKERS='.length).trim() };
}

export async function createTopic(cluster: KafkaCluster, topic: string, partitions: number): Promise<void> {
  await runChecked(
    kafkaSh(),
    [
      'run-class',
      'org.apache.kafka.tools.TopicCommand',
      '--bootstrap-server',
      cluster.brokers,
      '--create',
      '--if-not-exists',
      '--topic',
      topic,
      '--partitions',
      String(partitions),
      '--replication-factor',
      '1',
    ],
    { env: { ...process.env, KVS2_KAFKA_STATE: cluster.stateDir }, timeoutMs: 120_000 },
  );
}

/** Kafka's jars as scripts/kafka.sh caches them. */
function kafkaClasspath(): string {
  const version = /readonly KAFKA_VERSION="([^"]+)"/.exec(readFileSync(kafkaSh(), 'utf8'))?.[1];
  if (version === undefined) throw new Error(`cannot find KAFKA_VERSION in ${kafkaSh()}`);
  const cache = process.env.KVS2_KAFKA_CACHE ?? join(homedir(), '.cache', 'kvs2', `kafka-${version}`);
  return `${join(cache, 'libs')}/*`;
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
 * JVM (full JIT) rather than `kafka.sh run-class`, whose C1-only settings are tuned for quick tools.
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
      `-Dlog4j2.configurationFile=${join(cluster.stateDir, 'log4j2-tools.properties')}`,
      '-cp',
      kafkaClasspath(),
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
    { core: CLIENT_CORE, timeoutMs: 20 * 60_000, input: lines },
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
