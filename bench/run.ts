/**
 * The benchmark suite: kvs2 and its peers on this machine in one run, with load generators that are
 * not kvs2's code (ghz, redis-benchmark, kcat, Kafka's ProducerPerformance). Writes
 * <out>/<timestamp>.json, <out>/latest.json, <out>/latest.md and a latency/throughput plot.
 *
 *   npm run bench -- [--quick] [--scenario get,multiget,set,bootstrap,memory,cas,in-process,serve-workers]
 *                    [--peers etcd,redis,noop,kafka]
 *                    [--duration 5s] [--repetitions 3] [--keys 1000000] [--in-flight 64,256] [--out bench/results]
 *                    [--baseline <another built kvs2 checkout, or . for this one>]
 *                    [--args "<kvs2 serve flags of this tree>"] [--baseline-args "<kvs2 serve flags of the baseline>"]
 */
import { execFileSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { RunContext } from './context.js';
import { describeMachine, treeCommit } from './lib/machine.js';
import { CLIENT_CORE, SERVER_CORE, stopAll } from './lib/processes.js';
import type { Results } from './lib/results.js';
import { parseServerArgs } from './lib/server-args.js';
import { REPO_DIR, snapshotOtherTree, snapshotTree } from './lib/tree.js';
import { type BaselineSides, baselineEmbeddedPhase, baselineKafkaPhase } from './phases/baseline.js';
import { CasCheckError, casPhase } from './phases/cas.js';
import { kafkaPhase } from './phases/kafka.js';
import { kvs2Phase } from './phases/kvs2.js';
import { etcdPhase, noopPhase, redisPhase } from './phases/peers.js';
import { standalonePhase } from './phases/standalone.js';
import { DEFAULT_SCENARIOS, makePlan, PEERS, type PeerName, SCENARIOS, type ScenarioName } from './plan.js';
import { renderMarkdown } from './report/markdown.js';
import { renderPlot } from './report/plot.js';

function listOf<T extends string>(allowed: readonly T[]) {
  return (text: string): T[] => {
    const items = text
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    for (const item of items) {
      if (!allowed.includes(item as T)) throw new InvalidArgumentError(`expected some of ${allowed.join(',')}`);
    }
    return items as T[];
  };
}

function seconds(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(s|m)?$/.exec(text.trim());
  if (!m) throw new InvalidArgumentError('expected a duration like 10s or 1m');
  return Number(m[1]) * (m[2] === 'm' ? 60 : 1);
}

function positiveInt(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

function positiveInts(text: string): number[] {
  return text.split(',').map((item) => positiveInt(item.trim()));
}

const command = new Command('bench')
  .description('Benchmark kvs2 against etcd, Redis, Kafka and a no-op gRPC server on this machine')
  .option('--quick', 'small data, short runs, one point per scenario (CI)', false)
  .option('--scenario <list>', `scenarios to run: ${SCENARIOS.join(',')}`, listOf(SCENARIOS))
  .option('--peers <list>', `peers to run beside kvs2: ${PEERS.join(',')}`, listOf(PEERS))
  .option('--duration <time>', 'measured time of each repetition (e.g. 10s)', seconds)
  .option('--repetitions <n>', 'repetitions of each point', positiveInt)
  .option('--keys <n>', 'keys to load', positiveInt)
  .option(
    '--in-flight <list>',
    'closed-loop concurrencies of every call (default: each scenario its own)',
    positiveInts,
  )
  .option('--large-value-bytes <n>', 'value size of the large-value variant (0: none)', (t) =>
    t === '0' ? 0 : positiveInt(t),
  )
  .option('--out <dir>', 'where to write the results', join(REPO_DIR, 'bench/results'))
  .option('--no-profile', 'skip the CPU profile of kvs2 during Get')
  .option('--no-setup', 'do not run bench/setup.sh (tools must be installed)')
  .option('--keep-data', 'keep the temporary data and logs folder', false)
  .option(
    '--baseline <dir>',
    'compare with another built kvs2 checkout (or . for this build, with --args/--baseline-args): ' +
      'its closed-loop points alternate with this tree (peers: kafka only)',
  )
  .option(
    '--args <flags>',
    'with --baseline: extra kvs2 serve flags of this tree\'s node, e.g. "--log-level debug"',
    parseServerArgs,
  )
  .option('--baseline-args <flags>', "with --baseline: extra kvs2 serve flags of the baseline's node", parseServerArgs)
  .option('--render <results.json>', 'measure nothing: rewrite the Markdown and the plot from a results file')
  .parse();
const options = command.opts<{
  quick: boolean;
  scenario?: ScenarioName[];
  peers?: PeerName[];
  duration?: number;
  repetitions?: number;
  keys?: number;
  inFlight?: number[];
  largeValueBytes?: number;
  baseline?: string;
  args?: string[];
  baselineArgs?: string[];
  out: string;
  profile: boolean;
  setup: boolean;
  keepData: boolean;
  render?: string;
}>();

const plan = makePlan(options.quick, {
  ...(options.keys === undefined ? {} : { keys: options.keys }),
  ...(options.duration === undefined ? {} : { durationSec: options.duration }),
  ...(options.repetitions === undefined ? {} : { repetitions: options.repetitions }),
  ...(options.largeValueBytes === undefined ? {} : { largeValueBytes: options.largeValueBytes }),
  ...(options.inFlight === undefined ? {} : { inFlight: options.inFlight }),
});
const scenarios = new Set<ScenarioName>(options.scenario ?? DEFAULT_SCENARIOS);
// A comparison with a baseline tree runs kvs2 twice and no peer; `kafka` adds the comparison on Kafka.
const peers = new Set<PeerName>(
  options.peers ?? (options.baseline !== undefined ? [] : options.quick ? ['noop', 'redis'] : PEERS),
);
if (options.baseline !== undefined && [...peers].some((peer) => peer !== 'kafka')) {
  command.error('error: with --baseline, --peers can only be kafka');
}
if (options.baseline === undefined && (options.args !== undefined || options.baselineArgs !== undefined)) {
  command.error('error: --args and --baseline-args set the flags of the two sides of a --baseline comparison');
}
/** `--baseline .` (or this checkout by any path) compares this build with itself: only the flags differ. */
const sameTree =
  options.baseline !== undefined &&
  existsSync(options.baseline) &&
  realpathSync(options.baseline) === realpathSync(REPO_DIR);

let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write(`[bench] ${signal}: stopping everything the suite started\n`);
    void stopAll().finally(() => process.exit(130));
  });
}

/** bench/setup.sh installs missing tools and prints their versions as key=value lines. */
function setUpTools(): Record<string, string> {
  const args = options.setup ? [] : ['--check'];
  const stdout = execFileSync('bash', [join(REPO_DIR, 'bench/setup.sh'), ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const tools: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) tools[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return tools;
}

function hasCommand(command: string): boolean {
  try {
    execFileSync('bash', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function main(): Promise<number> {
  const started = new Date();
  if (!existsSync(join(REPO_DIR, 'dist/src/cli/main.js'))) throw new Error('kvs2 is not built: run npm run build');
  const machine = describeMachine(REPO_DIR); // before pinning ourselves: nproc honours affinity
  // The orchestrator (and the loader in it) stays off the server's core.
  execFileSync('taskset', ['-a', '-p', '-c', String(CLIENT_CORE), String(process.pid)], { stdio: 'ignore' });
  const tools = setUpTools();
  if (options.setup) tools.setup = 'bench/setup.sh';
  const workDir = mkdtempSync(join(tmpdir(), 'kvs2-bench-'));
  const tree = join(workDir, 'tree');
  snapshotTree(tree);
  // The same build runs from the one snapshot: both sides execute the very same files.
  const baselineSides: BaselineSides | undefined =
    options.baseline === undefined
      ? undefined
      : {
          tree: sameTree ? tree : snapshotOtherTree(options.baseline, join(workDir, 'baseline-tree')),
          currentArgs: options.args ?? [],
          baselineArgs: options.baselineArgs ?? [],
        };
  const results: Results = {
    suite: 'kvs2-bench',
    version: 1,
    startedAt: started.toISOString(),
    finishedAt: '',
    wallSeconds: 0,
    options: {
      quick: plan.quick,
      scenarios: [...scenarios],
      peers: [...peers],
      keys: plan.keys,
      valueBytes: plan.valueBytes,
      largeValueBytes: plan.largeValueBytes,
      largeKeys: plan.largeKeys,
      durationSec: plan.durationSec,
      warmUpSec: plan.warmUpSec,
      repetitions: plan.repetitions,
      serverCore: SERVER_CORE,
      clientCore: CLIENT_CORE,
      plan,
    },
    machine,
    tools,
    systems: {},
    points: [],
    loads: [],
    memory: [],
    kafkaProducer: null,
    bootstrap: null,
    pairedGet: [],
    ...(options.baseline === undefined
      ? {}
      : {
          baseline: {
            tree: resolve(options.baseline),
            commit: treeCommit(options.baseline),
            sameTree,
            currentArgs: options.args ?? [],
            baselineArgs: options.baselineArgs ?? [],
            comparisons: [],
          },
        }),
    skipped: [],
    notes: [],
    profile: null,
  };
  const ctx = new RunContext({ plan, scenarios, peers, workDir, results, profile: options.profile && !plan.quick });
  for (const scenario of ['bootstrap', 'memory', 'cas', 'in-process', 'serve-workers'] as const) {
    if (baselineSides && scenarios.has(scenario))
      ctx.skip(scenario, 'a comparison with --baseline runs Get, MultiGet, Set');
  }
  ctx.log(`work dir ${workDir}; scenarios ${[...scenarios].join(',')}; peers ${[...peers].join(',')}`);
  results.notes.push(
    `Servers run on core ${SERVER_CORE}, load generators on core ${CLIENT_CORE} (taskset); "Cores busy %" is core 0/core 1 during the first repetition: a load-generator core near 100% means the client, not the server, set the pace.`,
  );
  // Notes on the ghz and redis-benchmark points, which a run of conditional writes alone has none of.
  if (!baselineSides && [...scenarios].some((s) => !['cas', 'in-process', 'serve-workers'].includes(s)))
    results.notes.push(
      'Fixed-rate points use the same absolute rates for every contender: fractions of the best closed-loop rate kvs2 reached in this run. ghz spreads the rate over 64 workers; a contender that cannot keep up shows a lower achieved rate.',
      'etcd MultiGet is a Range over 100 consecutive keys (one B-tree scan), kvs2 MultiGet and Redis MGET read 100 random keys.',
      'redis-benchmark reports no p99.9 and has no fixed-rate mode; its GET/SET use the same key format (key:%012d) and value size.',
    );
  if (plan.largeValueBytes > 0 && !baselineSides && (scenarios.has('get') || scenarios.has('set'))) {
    results.notes.push(
      `Large-value points load ${plan.largeKeys.toLocaleString('en-US')} keys with ${plan.largeValueBytes} B values (a tenth of the keys keeps the load time bounded).`,
    );
  }

  const phases: Array<[string, boolean, () => Promise<void>]> = baselineSides
    ? [
        ['kvs2', true, () => baselineEmbeddedPhase(ctx, baselineSides)],
        ['kafka', peers.has('kafka'), () => baselineKafkaPhase(ctx, baselineSides)],
      ]
    : [
        // The conditional-write points start systems of their own, with no data loaded.
        [
          'kvs2',
          ['get', 'multiget', 'set', 'memory'].some((s) => scenarios.has(s as ScenarioName)),
          () => kvs2Phase(ctx),
        ],
        ['noop', peers.has('noop'), () => noopPhase(ctx)],
        [
          'etcd',
          peers.has('etcd') &&
            (scenarios.has('get') || scenarios.has('multiget') || scenarios.has('set') || scenarios.has('memory')),
          () => etcdPhase(ctx),
        ],
        ['redis', peers.has('redis'), () => redisPhase(ctx)],
        ['kafka', peers.has('kafka'), () => kafkaPhase(ctx)],
        ['cas', scenarios.has('cas'), () => casPhase(ctx)],
        // Last: they start systems of their own and need the cores to themselves.
        ['in-process', scenarios.has('in-process'), () => standalonePhase(ctx, tree, 'in-process')],
        ['serve-workers', scenarios.has('serve-workers'), () => standalonePhase(ctx, tree, 'serve-workers')],
      ];
  const needs: Record<string, string[]> = {
    etcd: ['etcd'],
    redis: ['redis-server', 'redis-benchmark', 'redis-cli'],
    kafka: ['java', 'kcat'],
    'in-process': ['java', 'kcat', 'redis-server', 'redis-benchmark', 'redis-cli'],
    'serve-workers': ['h2load'],
  };
  let failed = false;
  try {
    for (const [name, wanted, phase] of phases) {
      if (!wanted || interrupted) continue;
      const missing = (needs[name] ?? []).filter((c) => !hasCommand(c));
      if (missing.length > 0) {
        ctx.skip(name, `missing ${missing.join(', ')}`);
        continue;
      }
      try {
        await phase();
      } catch (error) {
        // A lost update in the conditional-write points fails the run loudly, whatever else it measured.
        failed ||= name === 'kvs2' || error instanceof CasCheckError;
        ctx.skip(`${name} (phase failed)`, error instanceof Error ? (error.stack ?? error.message) : String(error));
      } finally {
        await stopAll();
      }
    }
  } finally {
    await stopAll();
  }
  results.finishedAt = new Date().toISOString();
  results.machine.loadAverageAtEnd = loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  results.wallSeconds = (Date.now() - started.getTime()) / 1000;
  writeResults(results);
  if (!options.keepData) rmSync(workDir, { recursive: true, force: true });
  else ctx.log(`kept ${workDir}`);
  ctx.log(`done in ${results.wallSeconds.toFixed(0)} s`);
  // A run that measured nothing failed; bootstrap and memory have results of their own, not points.
  const measured =
    results.points.length > 0 ||
    (results.cas?.length ?? 0) > 0 ||
    results.memory.length > 0 ||
    results.bootstrap !== null ||
    (results.standalone?.length ?? 0) > 0 ||
    (results.baseline?.comparisons.length ?? 0) > 0;
  return failed || !measured ? 1 : 0;
}

function writeResults(results: Results): void {
  const outDir = resolve(options.out);
  mkdirSync(outDir, { recursive: true });
  const quick = results.options.quick === true;
  // Quick runs and comparisons with a baseline are not full runs: their files never replace latest.*.
  const ran = new Set(Array.isArray(results.options.scenarios) ? results.options.scenarios : []);
  // A run of scenarios asked for by name only (cas, in-process, serve-workers) has files of its own, named
  // after them: it never replaces a full run's latest.*.
  const byNameOnly = ran.size > 0 && [...ran].every((scenario) => !DEFAULT_SCENARIOS.includes(scenario));
  const suffix = quick ? '-quick' : results.baseline ? '-baseline' : byNameOnly ? `-${[...ran].sort().join('-')}` : '';
  const stamp = results.startedAt.replace(/\.\d+Z$/, 'Z').replaceAll(':', '-');
  // The plot of a full run of every scenario into the default folder goes into docs/ (docs/benchmarks.md
  // shows it); any other run's plot stays with its results, so a partial run cannot replace the published one.
  const publishes =
    !quick && outDir === resolve(REPO_DIR, 'bench/results') && DEFAULT_SCENARIOS.every((scenario) => ran.has(scenario));
  const plotPath = publishes ? join(REPO_DIR, 'docs/benchmarks-latency.svg') : join(outDir, `latest${suffix}.svg`);
  // A comparison with a baseline, or a run of conditional writes alone, has no points to plot.
  const plots = !results.baseline && results.points.length > 0;
  if (plots) {
    mkdirSync(join(plotPath, '..'), { recursive: true });
    writeFileSync(plotPath, renderPlot(results, Number(results.options.valueBytes)));
  }
  const json = `${JSON.stringify(results, null, 2)}\n`;
  writeFileSync(join(outDir, `${stamp}${suffix}.json`), json);
  writeFileSync(join(outDir, `latest${suffix}.json`), json);
  writeFileSync(join(outDir, `latest${suffix}.md`), renderMarkdown(results, plots ? relative(outDir, plotPath) : null));
  if (!quick) copyFileSync(join(outDir, `latest${suffix}.md`), join(outDir, `${stamp}${suffix}.md`));
  process.stderr.write(
    `[bench] wrote ${join(outDir, `latest${suffix}.md`)} and ${join(outDir, `${stamp}${suffix}.json`)}\n`,
  );
}

if (options.render !== undefined) {
  writeResults(JSON.parse(readFileSync(options.render, 'utf8')) as Results);
  process.exit(0);
}

main().then(
  (code) => process.exit(code),
  async (error: unknown) => {
    process.stderr.write(
      `[bench] failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    await stopAll();
    process.exit(1);
  },
);
