import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Consistency, Kvs2Client } from '../../src/client/kvs2-client.js';
import { KafkaCluster } from '../kafka/cluster.js';
import { pickFreePorts } from '../kafka/ports.js';
import { type CheckResult, check, describeWrite, type Violation } from './checker.js';
import { History } from './history.js';
import { type LogSnapshot, logEnds, readLog } from './log-snapshot.js';
import { type FaultKind, Nemesis } from './nemesis.js';
import { ClusterNode, type NodeCrash } from './node-process.js';
import { SeededRandom } from './random.js';
import { runReader, runWriter, type WorkloadNode } from './workload.js';

export interface FaultRunOptions {
  readonly seed: number;
  /** How long writers, readers and the nemesis run, in milliseconds. */
  readonly loadMs: number;
  /** Go on past `loadMs` until every kind of fault ran once (for short runs). */
  readonly everyFaultKind?: boolean;
  readonly writers?: number;
  readonly readers?: number;
  readonly keys?: number;
  readonly partitions?: number;
  /** Where the brokers' and nodes' data and logs go; a fresh temporary folder by default. */
  readonly workDir?: string;
  /** Keep the work folder (node logs, broker logs) even when the run passes. */
  readonly keepWorkDir?: boolean;
  readonly log?: (line: string) => void;
}

export interface FaultRunResult {
  readonly ok: boolean;
  /** A few lines: counts of writes, reads, faults and violations. */
  readonly summary: string;
  /** The summary, then each violation with the history that shows it. */
  readonly report: string;
  readonly violations: readonly Violation[];
  readonly counts: FaultRunCounts;
  readonly workDir: string;
}

export interface FaultRunCounts {
  readonly acknowledgedWrites: number;
  readonly unknownWrites: number;
  readonly answeredReads: number;
  readonly faults: readonly FaultKind[];
  /** Starts of wiped nodes during the load that installed a peer's snapshot, and those that read the topic. */
  readonly peerBootstraps: number;
  readonly topicFallbacks: number;
}

const NODES = 3;
const BROKERS = 3;
const SERVING_TIMEOUT_MS = 180_000;
const SCAN_TIMEOUT_MS = 120_000;
/** How long a bootstrapping node waits on a silent (paused) peer before it asks the next one. */
const BOOTSTRAP_STALL_MS = 3_000;

/**
 * A Jepsen-style run against a real cluster: 3 brokers (RF 3, min.insync.replicas 2) and 3 kvs2 nodes,
 * concurrent writers and token-chaining readers while the nemesis kills, pauses and wipes nodes and kills
 * and pauses brokers; then everything is healed and the history is checked against the log (checker.ts).
 */
export async function runFaultCheck(options: FaultRunOptions): Promise<FaultRunResult> {
  const log = options.log ?? (() => {});
  const workDir = options.workDir ?? (await mkdtemp(join(tmpdir(), 'kvs2-faults-')));
  await mkdir(workDir, { recursive: true });
  const random = new SeededRandom(options.seed);
  const partitions = options.partitions ?? 6;
  const keys = Array.from({ length: options.keys ?? 24 }, (_, i) => `k${String(i).padStart(2, '0')}`);
  const topic = `kvs2-faults-${options.seed}`;
  const crashes: NodeCrash[] = [];
  let kafka: KafkaCluster | undefined;
  const nodes: ClusterNode[] = [];
  const clients: Kvs2Client[] = [];
  let passed = false;
  try {
    log(`starting ${BROKERS} brokers in ${workDir}`);
    kafka = await KafkaCluster.start({ stateDir: join(workDir, 'kafka'), brokers: BROKERS, log });
    const brokers = kafka.bootstrap;
    const ports = await pickFreePorts(NODES);
    const startedAt = Date.now();
    const history = new History(startedAt);
    for (let i = 0; i < NODES; i++) {
      const name = `n${i + 1}`;
      nodes.push(
        new ClusterNode({
          name,
          port: ports[i] as number,
          dataDir: join(workDir, `${name}-data`),
          logFile: join(workDir, `${name}.log`),
          args: [
            '--kafka-brokers',
            brokers,
            '--topic',
            topic,
            '--partitions',
            String(partitions),
            '--replication-factor',
            String(BROKERS),
            '--bootstrap-stall-timeout-ms',
            String(BOOTSTRAP_STALL_MS),
          ],
          // An empty node (a wiped one) installs a peer's store, the next in the ring first, then reads the
          // topic from its offsets; a peer that is away is given up after the stall limit.
          bootstrapFrom: () => [1, 2].map((step) => nodes[(i + step) % NODES] as ClusterNode),
          startedAt,
          onCrash: (crash) => {
            crashes.push(crash);
            history.event(`${crash.node} CRASHED (code ${crash.code}, signal ${crash.signal})`);
          },
        }),
      );
    }
    // The first node creates the topic; the others then find it.
    for (const node of nodes) {
      if (!(await node.start())) throw new Error(`${node.name} exited at start-up:\n${node.tail().join('\n')}`);
    }
    const unready = await waitServing(nodes, SERVING_TIMEOUT_MS);
    if (unready.size > 0) throw new Error(`nodes not SERVING before the load: ${[...unready]}`);
    log(`nodes ${nodes.map((n) => n.address)} SERVING on ${brokers}, topic ${topic}; load for ${options.loadMs} ms`);

    const workload: WorkloadNode[] = nodes.map((node) => {
      const client = new Kvs2Client(node.address);
      clients.push(client);
      return { name: node.name, client };
    });
    const loadEnds = Date.now() + options.loadMs;
    let stopped = false;
    const workOptions = { nodes: workload, keys, history, stopped: () => stopped };
    const workers = [
      ...Array.from({ length: options.writers ?? 4 }, (_, i) => runWriter(`w${i}`, random.fork(), workOptions)),
      ...Array.from({ length: options.readers ?? 3 }, (_, i) => runReader(`r${i}`, random.fork(), workOptions)),
    ];
    const nemesis = new Nemesis({ nodes, kafka, history }, random.fork());
    // Only the starts of wiped nodes count: at the cluster's own start the peers are empty or not up yet.
    const bootstrapsSoFar = () => ({
      fromPeer: nodes.reduce((sum, node) => sum + node.bootstraps.fromPeer, 0),
      topicFallback: nodes.reduce((sum, node) => sum + node.bootstraps.topicFallback, 0),
    });
    const bootstrapsBefore = bootstrapsSoFar();
    history.event('load starts');
    const loadStarted = Date.now();
    await nemesis.run(() => Date.now() >= loadEnds, options.everyFaultKind === true);
    stopped = true;
    await Promise.all(workers);
    history.event('load stopped');
    const loadMs = Date.now() - loadStarted;
    log(`load done: faults ${nemesis.done.join(', ')}; healing`);

    await nemesis.heal();
    const notServing = await waitServing(nodes, SERVING_TIMEOUT_MS);
    history.event('heal done');
    log('every node healed; reading the log and every node');
    const { snapshot, nodeStates } = await quiescentState(brokers, topic, workload, notServing);
    const result = check({ history, log: snapshot, nodeStates, crashes, notServing });
    const bootstrapsAfter = bootstrapsSoFar();
    const bootstraps = {
      fromPeer: bootstrapsAfter.fromPeer - bootstrapsBefore.fromPeer,
      topicFallback: bootstrapsAfter.topicFallback - bootstrapsBefore.topicFallback,
    };
    const summary = summarize(options.seed, loadMs, history, nemesis.done, snapshot, nodeStates, result, bootstraps);
    const report = [
      summary,
      ...result.notes.map((n) => `note: ${n}`),
      ...explain(result.violations, history, snapshot),
    ].join('\n');
    passed = result.violations.length === 0;
    const counts: FaultRunCounts = {
      acknowledgedWrites: history.writes.filter((w) => w.outcome === 'ok').length,
      unknownWrites: history.writes.filter((w) => w.outcome === 'unknown').length,
      answeredReads: history.reads.filter((r) => r.ok).length,
      faults: nemesis.done,
      peerBootstraps: bootstraps.fromPeer,
      topicFallbacks: bootstraps.topicFallback,
    };
    return { ok: passed, summary, report, violations: result.violations, counts, workDir };
  } finally {
    for (const client of clients) client.close();
    await Promise.allSettled(nodes.map((node) => node.stop()));
    await kafka?.stop().catch(() => {});
    if (passed && !options.keepWorkDir) await rm(workDir, { recursive: true, force: true });
    else log(`the nodes' and brokers' logs are in ${workDir}`);
  }
}

/** Waits until every node answers SERVING (exactly); returns those that did not, with their last answer. */
async function waitServing(nodes: readonly ClusterNode[], timeoutMs: number): Promise<Map<string, string>> {
  const deadline = Date.now() + timeoutMs;
  const last = new Map<string, string>(nodes.map((n) => [n.name, 'no answer yet']));
  for (;;) {
    await Promise.all(
      nodes.map(async (node) => {
        if (!last.has(node.name)) return;
        try {
          const status = await node.health.check('kvs2.Kvs2');
          if (status === 'SERVING') last.delete(node.name);
          else last.set(node.name, status);
        } catch (error) {
          last.set(node.name, String(error));
        }
      }),
    );
    if (last.size === 0 || Date.now() > deadline) return last;
    await sleep(250);
  }
}

/**
 * The log and every node's full state, read while nothing writes; read again if the log grew meanwhile
 * (a write the heal released), so both describe the same log.
 */
async function quiescentState(
  brokers: string,
  topic: string,
  workload: readonly WorkloadNode[],
  notServing: ReadonlyMap<string, string>,
): Promise<{ snapshot: LogSnapshot; nodeStates: Map<string, Map<string, string>> }> {
  for (let attempt = 1; ; attempt++) {
    const snapshot = await readLog(brokers, topic);
    const nodeStates = new Map<string, Map<string, string>>();
    for (const node of workload) {
      if (notServing.has(node.name)) continue;
      nodeStates.set(node.name, await scanAll(node.client));
    }
    const ends = await logEnds(brokers, topic);
    if (ends.every((end, p) => end === snapshot.ends[p]) || attempt === 5) return { snapshot, nodeStates };
    await sleep(2000);
  }
}

/** Every key and value a node holds, page by page, each page with CONSISTENCY_LATEST. */
async function scanAll(client: Kvs2Client): Promise<Map<string, string>> {
  const state = new Map<string, string>();
  let continuation: Buffer = Buffer.alloc(0);
  const deadline = Date.now() + SCAN_TIMEOUT_MS;
  for (;;) {
    let page: Awaited<ReturnType<Kvs2Client['scan']>>;
    try {
      page = await client.scan({ continuation, limit: 1000, consistency: Consistency.CONSISTENCY_LATEST }, 30_000);
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(500);
      continue;
    }
    for (const item of page.items) state.set(item.key.toString(), item.value.toString());
    if (page.continuation.length === 0) return state;
    continuation = page.continuation;
  }
}

function summarize(
  seed: number,
  loadMs: number,
  history: History,
  faults: readonly string[],
  snapshot: LogSnapshot,
  nodeStates: ReadonlyMap<string, ReadonlyMap<string, string>>,
  result: CheckResult,
  bootstraps: { readonly fromPeer: number; readonly topicFallback: number },
): string {
  const count = (outcome: string) => history.writes.filter((w) => w.outcome === outcome).length;
  const reads = history.reads.filter((r) => r.ok);
  return [
    `faults check: seed ${seed}, ${Math.round(loadMs / 1000)} s of load, ${faults.length} faults (${faults.join(', ') || 'none'})`,
    `writes: ${count('ok')} acknowledged, ${count('failed')} refused, ${count('unknown')} unknown (${result.unknownLanded} landed, ${result.unknownNotLanded} not; deletes not counted)`,
    `reads: ${reads.length} answered (${reads.filter((r) => r.afterWrite !== undefined).length} with a write's token, ${reads.filter((r) => r.consistency === 'latest').length} latest), ${history.reads.length - reads.length} failed`,
    `wiped nodes: ${bootstraps.fromPeer} installed a peer's snapshot, ${bootstraps.topicFallback} read the topic (no peer gave one)`,
    `log: ${snapshot.records.length} records; nodes checked: ${[...nodeStates].map(([n, s]) => `${n} (${s.size} keys)`).join(', ')}`,
    `violations: ${result.violations.length}`,
  ].join('\n');
}

/** Each violation (the first 20), with the key's history in the log and the nemesis around it. */
function explain(violations: readonly Violation[], history: History, snapshot: LogSnapshot): string[] {
  const lines: string[] = [];
  const writesByValue = new Map(history.writes.flatMap((w) => (w.value === null ? [] : [[w.value, w] as const])));
  // A few of each kind first: one kind must not hide the others.
  const shown: Violation[] = [];
  for (const kind of new Set(violations.map((v) => v.kind))) {
    shown.push(...violations.filter((v) => v.kind === kind).slice(0, 5));
  }
  for (const violation of shown.slice(0, 20)) {
    lines.push('', `VIOLATION ${violation.kind}: ${violation.message}`);
    const read = violation.read;
    if (read !== undefined) {
      lines.push(
        `  read #${read.id} by ${read.client} on ${read.node}: ${read.rpc} ${read.keys} ${read.consistency}, after ${offsetsText(read.after)}, ` +
          `invoked ${read.invokedMs} ms, answered ${read.completedMs} ms: ${read.values?.map((v) => v ?? 'NOT_FOUND')} with token ${offsetsText(read.replied ?? new Map())}`,
      );
    }
    if (violation.key !== undefined) {
      const records = snapshot.records.filter((r) => r.key === violation.key);
      const at = violation.offset === undefined ? -1 : records.findIndex((r) => r.offset >= (violation.offset ?? 0));
      const from = at < 0 ? Math.max(0, records.length - 15) : Math.max(0, at - 7);
      lines.push(`  ${violation.key} in the log (${records.length} records; from the ${from + 1}th):`);
      for (const record of records.slice(from, from + 15)) {
        const write = record.value === null ? undefined : writesByValue.get(record.value);
        lines.push(
          `    ${record.partition}:${record.offset} ${record.value ?? '(delete)'}` +
            (write === undefined
              ? ''
              : `  #${write.id} ${describeWrite(write)}, ${write.invokedMs}-${write.completedMs} ms`),
        );
      }
    }
    if (violation.atMs !== undefined) {
      const at = violation.atMs;
      const around = history.events.filter((e) => e.atMs >= at - 15_000 && e.atMs <= at + 5_000);
      lines.push('  nemesis around it:', ...around.map((e) => `    ${e.atMs} ms ${e.what}`));
    }
  }
  if (violations.length > shown.slice(0, 20).length) {
    const kinds = new Map<string, number>();
    for (const v of violations) kinds.set(v.kind, (kinds.get(v.kind) ?? 0) + 1);
    lines.push('', `${violations.length} violations in all: ${[...kinds].map(([k, n]) => `${n} ${k}`).join(', ')}`);
  }
  if (violations.length > 0) lines.push('', 'timeline:', ...history.events.map((e) => `  ${e.atMs} ms ${e.what}`));
  return lines;
}

function offsetsText(offsets: ReadonlyMap<number, number>): string {
  return `{${[...offsets].map(([p, o]) => `${p}:${o}`).join(' ')}}`;
}
