import { readFileSync, rmSync } from 'node:fs';
import { credentials } from '@grpc/grpc-js';
import { Kvs2Client, MultiGetRequest } from '../../src/gen/kvs2.js';
import type { RunContext } from '../context.js';
import { keyFor, valueFor } from '../lib/dataset.js';
import { sweepEveryKey } from '../lib/key-sweep.js';
import { CLIENT_CORE, sleep, waitFor } from '../lib/processes.js';
import type { PeerBootstrapResult } from '../lib/results.js';
import { spread } from '../lib/stats.js';
import { setPoints, writePoints } from '../scenarios.js';
import {
  createTopic,
  type KafkaCluster,
  kafkaUp,
  kcatConsumeAll,
  kcatProduce,
  type ProducerPerfResult,
  producerPerformance,
} from '../systems/kafka.js';
import { type Kvs2Node, startKvs2 } from '../systems/kvs2.js';
import { kvs2Contender, recordKvs2Memory } from './kvs2.js';
import { recordLoad, type Variant } from './variants.js';

const KVS2_TOPIC = 'kvs2-bench';
const RAW_TOPIC = 'bench-raw';
/** kvs2's default --partitions, used for the raw topic too. */
const PARTITIONS = 12;

/**
 * One Kafka broker (the runner in scripts/kafka/, private state dir): the raw producer ceiling, kvs2 on Kafka
 * (Set), and the bootstrap of new nodes from a topic of `keys` records against kcat reading it.
 */
export async function kafkaPhase(ctx: RunContext): Promise<void> {
  const wantsSet = ctx.scenarios.has('set');
  const wantsBootstrap = ctx.scenarios.has('bootstrap') || ctx.scenarios.has('memory');
  if (!wantsSet && !wantsBootstrap) return;
  ctx.log('starting Kafka (one broker)');
  let cluster: KafkaCluster;
  try {
    cluster = await kafkaUp(ctx.dir('kafka-state'));
  } catch (error) {
    ctx.skip('kafka peers (raw producer, kvs2 on Kafka, bootstrap)', String(error));
    return;
  }
  ctx.results.systems.kafka = { durability: 'acks=all, 1 broker, no fsync per write (Kafka default)' };
  try {
    if (wantsSet) await rawProducer(ctx, cluster);
    await kvs2OnKafka(ctx, cluster, wantsSet, wantsBootstrap);
  } finally {
    ctx.log('stopping Kafka');
    await cluster.down();
  }
}

async function rawProducer(ctx: RunContext, cluster: KafkaCluster): Promise<void> {
  const records = Math.min(ctx.plan.kafkaProducerRecords, Math.max(ctx.plan.keys, 10_000));
  const recordBytes = 16 + ctx.plan.valueBytes;
  try {
    await createTopic(cluster, RAW_TOPIC, PARTITIONS);
    await producerPerformance(cluster, RAW_TOPIC, Math.min(records, 50_000), recordBytes); // warm-up
    const samples: ProducerPerfResult[] = [];
    for (let rep = 0; rep < ctx.plan.repetitions; rep++) {
      samples.push(await producerPerformance(cluster, RAW_TOPIC, records, recordBytes));
    }
    ctx.results.kafkaProducer = {
      records,
      recordBytes,
      recordsPerSec: spread(samples.map((s) => s.recordsPerSec)),
      p50Ms: spread(samples.map((s) => s.p50Ms)),
      p99Ms: spread(samples.map((s) => s.p99Ms)),
      p999Ms: spread(samples.map((s) => s.p999Ms)),
      samples: samples.map((s) => ({ ...s })),
    };
    ctx.log(`kafka raw producer: ${ctx.results.kafkaProducer.recordsPerSec?.median.toFixed(0)} records/s (acks=all)`);
  } catch (error) {
    ctx.skip('kafka raw producer', error instanceof Error ? error.message : String(error));
  }
}

async function kvs2OnKafka(
  ctx: RunContext,
  cluster: KafkaCluster,
  wantsSet: boolean,
  wantsBootstrap: boolean,
): Promise<void> {
  const variant: Variant = { main: true, keys: ctx.plan.keys, valueBytes: ctx.plan.valueBytes, label: 'kafka' };
  const kafka = { brokers: cluster.brokers, topic: KVS2_TOPIC, extraPids: () => cluster.brokerPids() };
  ctx.log('starting kvs2 on Kafka');
  let node: Kvs2Node;
  try {
    node = await startKvs2({
      name: 'kvs2-kafka',
      dataDir: ctx.dir('kvs2-kafka'),
      logFile: ctx.logFile('kvs2-kafka'),
      kafka,
    });
  } catch (error) {
    ctx.skip('kvs2 on Kafka (Set, bootstrap)', error instanceof Error ? error.message : String(error));
    return;
  }
  ctx.results.systems['kvs2-kafka'] = {
    durability: node.durability,
    notes: 'server CPU counts kvs2 and the broker',
  };
  try {
    // Loaded with kcat straight into kvs2's topic (same keys, values and partitioner as kvs2's
    // producer): much faster than a million Sets, and the topic is what the bootstrap reads.
    const { seconds } = await kcatProduce(cluster, KVS2_TOPIC, kcatLines(variant.keys, variant.valueBytes));
    recordLoad(ctx, 'kvs2-kafka (kcat into the topic)', variant, seconds);
    await waitUntilApplied(node, variant.keys);
    if (wantsBootstrap) await bootstrap(ctx, cluster, kafka, variant, node);
    if (wantsSet) {
      await setPoints(ctx, kvs2Contender(ctx, node, 'kvs2-kafka', 'Set', variant.valueBytes), variant.valueBytes);
      await writePoints(ctx, kvs2Contender(ctx, node, 'kvs2-kafka', 'Write', variant.valueBytes), variant.valueBytes);
    }
  } catch (error) {
    ctx.skip('kvs2 on Kafka', error instanceof Error ? error.message : String(error));
  } finally {
    await node.stop();
  }
}

export async function* kcatLines(keys: number, valueBytes: number): AsyncGenerator<Buffer> {
  const chunk: Buffer[] = [];
  const tab = Buffer.from('\t');
  const newline = Buffer.from('\n');
  for (let i = 0; i < keys; i++) {
    chunk.push(keyFor(i), tab, valueFor(i, valueBytes), newline);
    if (chunk.length >= 4 * 5_000) yield Buffer.concat(chunk.splice(0));
  }
  if (chunk.length > 0) yield Buffer.concat(chunk);
}

/** Waits until a sample of keys, the last ones produced among them, reads back from the node. */
export async function waitUntilApplied(node: Kvs2Node, keys: number): Promise<void> {
  const client = new Kvs2Client(node.target, credentials.createInsecure());
  const sample: Buffer[] = [];
  for (let i = keys - 1; i >= 0 && sample.length < 1_000; i -= Math.max(1, Math.floor(keys / 997))) {
    sample.push(keyFor(i));
  }
  try {
    await waitFor(
      'kvs2 on Kafka to apply the loaded records',
      () =>
        new Promise<boolean>((resolve) => {
          client.multiGet({ ...MultiGetRequest.decode(new Uint8Array()), keys: sample }, (error, reply) =>
            resolve(error === null && reply.parts.every((p) => p.status === 0)),
          );
        }),
      15 * 60_000,
      500,
    );
  } finally {
    client.close();
  }
}

type KafkaTarget = { brokers: string; topic: string; extraPids: () => number[] };

/**
 * Scenario 4 (and 5 for the new node): new nodes with empty stores against kcat reading the topic; then new
 * nodes that load a snapshot of `peer` (a serving node that applied the whole topic) before the topic.
 */
async function bootstrap(
  ctx: RunContext,
  cluster: KafkaCluster,
  kafka: KafkaTarget,
  variant: Variant,
  peer: Kvs2Node,
): Promise<void> {
  const servingSec: number[] = [];
  const catchUpSec: number[] = [];
  for (let rep = 0; rep < ctx.plan.repetitions; rep++) {
    const dataDir = ctx.dir(`kvs2-bootstrap-${rep}`);
    // The new node is a consumer here, like kcat: both run on the client core, the broker on the other.
    const node = await startKvs2({
      name: 'kvs2-bootstrap',
      dataDir,
      logFile: ctx.logFile(`kvs2-bootstrap-${rep}`),
      kafka,
      core: CLIENT_CORE,
      readyTimeoutMs: 20 * 60_000,
    });
    servingSec.push(node.startup.servingMs / 1000);
    catchUpSec.push((node.startup.servingMs - node.startup.listeningMs) / 1000);
    ctx.log(`bootstrap ${rep + 1}: SERVING after ${(node.startup.servingMs / 1000).toFixed(2)} s`);
    const last = rep === ctx.plan.repetitions - 1;
    if (last && ctx.scenarios.has('memory')) await recordKvs2Memory(ctx, 'kvs2-bootstrapped', node, dataDir, variant);
    await node.stop();
    if (!last) rmSync(dataDir, { recursive: true, force: true });
    await sleep(500);
  }
  const peerRuns = await peerBootstrap(ctx, kafka, variant, peer);
  const kcatSec: number[] = [];
  let records = variant.keys;
  for (let rep = 0; rep < ctx.plan.repetitions; rep++) {
    const read = await kcatConsumeAll(cluster, KVS2_TOPIC);
    records = read.records;
    kcatSec.push(read.seconds);
    ctx.log(`kcat read ${read.records} records in ${read.seconds.toFixed(2)} s`);
  }
  const kvs2Rate = spread(servingSec.map((s) => records / s));
  const kcatRate = spread(kcatSec.map((s) => records / s));
  ctx.results.bootstrap = {
    records,
    kvs2: {
      servingSec: spread(servingSec),
      recordsPerSec: kvs2Rate,
      samples: servingSec,
      catchUpOnlySec: spread(catchUpSec),
    },
    kcat: { seconds: spread(kcatSec), recordsPerSec: kcatRate, samples: kcatSec },
    ratio: kvs2Rate && kcatRate ? kvs2Rate.median / kcatRate.median : null,
    ...(peerRuns === null ? {} : { peer: peerResult(peerRuns, records, kcatRate?.median ?? null) }),
  };
}

interface PeerRun {
  readonly servingSec: number;
  readonly catchUpOnlySec: number;
  /** From the node's `bootstrapped from peer` log line. */
  readonly keys: number;
  readonly peerLoadSec: number;
}

/**
 * New nodes started with `--bootstrap-from` the serving `peer`: on the client core like the topic bootstrap
 * and kcat (the peer, which streams the snapshot, shares the server core with the broker). Each must log
 * that it loaded the peer's snapshot; a node that fell back to reading the topic fails the measurement.
 * Null (and a skip) when it could not run.
 */
async function peerBootstrap(
  ctx: RunContext,
  kafka: KafkaTarget,
  variant: Variant,
  peer: Kvs2Node,
): Promise<PeerRun[] | null> {
  const runs: PeerRun[] = [];
  try {
    for (let rep = 0; rep < ctx.plan.repetitions; rep++) {
      const dataDir = ctx.dir(`kvs2-peer-bootstrap-${rep}`);
      const logFile = ctx.logFile(`kvs2-peer-bootstrap-${rep}`);
      const node = await startKvs2({
        name: 'kvs2-peer-bootstrap',
        dataDir,
        logFile,
        kafka,
        core: CLIENT_CORE,
        readyTimeoutMs: 20 * 60_000,
        serverArgs: ['--bootstrap-from', peer.target],
      });
      const last = rep === ctx.plan.repetitions - 1;
      try {
        const loaded = await peerLoadLine(logFile);
        runs.push({
          servingSec: node.startup.servingMs / 1000,
          catchUpOnlySec: (node.startup.servingMs - node.startup.listeningMs) / 1000,
          keys: loaded.keys,
          peerLoadSec: loaded.tookMs / 1000,
        });
        ctx.log(
          `peer bootstrap ${rep + 1}: SERVING after ${(node.startup.servingMs / 1000).toFixed(2)} s ` +
            `(${loaded.keys} keys from the peer in ${(loaded.tookMs / 1000).toFixed(2)} s)`,
        );
        if (last && ctx.scenarios.has('memory')) {
          // Read every key once first: right after the install the node has touched almost none of its
          // store's pages, and its RSS would say nothing about a node that serves them.
          await sweepEveryKey(node.target, variant.keys, 'the peer-bootstrapped node');
          await recordKvs2Memory(ctx, 'kvs2-peer-bootstrapped', node, dataDir, variant);
        }
      } finally {
        await node.stop();
      }
      if (!last) rmSync(dataDir, { recursive: true, force: true });
      await sleep(500);
    }
    return runs;
  } catch (error) {
    ctx.skip('bootstrap from a peer', error instanceof Error ? error.message : String(error));
    return null;
  }
}

/** The `bootstrapped from peer` line of a node's log (JSON lines); the log file may lag the node a little. */
async function peerLoadLine(logFile: string): Promise<{ keys: number; tookMs: number }> {
  let found: { keys: number; tookMs: number } | undefined;
  await waitFor(
    `the "bootstrapped from peer" line in ${logFile} (a node that fell back to the topic has none)`,
    () => {
      for (const line of readFileSync(logFile, 'utf8').split('\n')) {
        if (!line.includes('bootstrapped from peer')) continue;
        const entry = JSON.parse(line) as { keys?: unknown; tookMs?: unknown };
        if (typeof entry.keys === 'number' && typeof entry.tookMs === 'number') {
          found = { keys: entry.keys, tookMs: entry.tookMs };
          return true;
        }
      }
      return false;
    },
    10_000,
  );
  if (found === undefined) throw new Error(`no "bootstrapped from peer" line in ${logFile}`);
  return found;
}

function peerResult(runs: readonly PeerRun[], records: number, kcatRate: number | null): PeerBootstrapResult {
  const recordsPerSec = spread(runs.map((r) => records / r.servingSec));
  return {
    keys: runs[0]?.keys ?? 0,
    servingSec: spread(runs.map((r) => r.servingSec)),
    recordsPerSec,
    catchUpOnlySec: spread(runs.map((r) => r.catchUpOnlySec)),
    catchUpOnlyRecordsPerSec: spread(runs.map((r) => records / r.catchUpOnlySec)),
    keysPerSec: spread(runs.map((r) => r.keys / r.servingSec)),
    peerLoadSec: spread(runs.map((r) => r.peerLoadSec)),
    samples: runs.map((r) => r.servingSec),
    ratioToKcat: recordsPerSec && kcatRate ? recordsPerSec.median / kcatRate : null,
  };
}
