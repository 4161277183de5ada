import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { RunContext } from '../context.js';
import { run } from '../lib/processes.js';
import type { Plan, ScenarioName } from '../plan.js';

/** The scenarios a script of their own measures, and how the suite's plan becomes its options. */
const SCRIPTS: Partial<Record<ScenarioName, { readonly script: string; readonly args: (plan: Plan) => string[] }>> = {
  // Issue 17's in-process goals: openReplica and openColocatedReader against Redis GET and gRPC Get.
  'in-process': {
    script: 'in-process-reads',
    args: (plan) => [
      '--keys',
      String(plan.keys),
      '--duration',
      String(plan.durationSec),
      '--repetitions',
      String(plan.repetitions),
    ],
  },
  // Nodes that differ only in --serve-workers, alternated; a tenth of the keys (three nodes load them).
  'serve-workers': {
    script: 'serve-workers',
    args: (plan) => [
      '--workers',
      '0,1,2',
      '--keys',
      String(Math.max(1_000, Math.floor(plan.keys / 10))),
      '--duration',
      String(plan.durationSec),
      '--rounds',
      String(Math.max(2, plan.repetitions * 2)),
    ],
  },
};

/**
 * A scenario measured by a script of its own (bench/<script>.ts), which starts the systems it needs (a
 * broker, nodes, Redis) and places them on the cores itself: run from the suite's copy of the tree, after
 * the suite's own systems are stopped, with the suite's sizes, its report kept in the suite's results.
 */
export async function standalonePhase(ctx: RunContext, tree: string, scenario: ScenarioName): Promise<void> {
  const spec = SCRIPTS[scenario];
  if (spec === undefined) throw new Error(`${scenario} is not measured by a script of its own`);
  const out = ctx.dir(`standalone-${scenario}`);
  const args = [join(tree, `dist/bench/${spec.script}.js`), ...spec.args(ctx.plan), '--out', out];
  const command = `node dist/bench/${spec.script}.js ${args.slice(1, -2).join(' ')}`;
  ctx.log(`${scenario}: ${command}`);
  // Every core again (the suite pins itself, and children inherit it): the script places its systems.
  const cores = `0-${Math.max(1, Number(ctx.results.machine.cores) || availableParallelism()) - 1}`;
  // Bounded: a full in-process run takes ~6 minutes, serve-workers ~10.
  const result = await run('taskset', ['-c', cores, process.execPath, ...args], { cwd: tree, timeoutMs: 60 * 60_000 });
  if (result.code !== 0) {
    const tail = (result.stderr || result.stdout).trim().split('\n').slice(-15).join('\n');
    throw new Error(`${spec.script} exited with ${result.code}:\n${tail}`);
  }
  const written = readdirSync(out);
  const json = written.find((f) => f.endsWith('.json'));
  const markdown = written.find((f) => f.endsWith('.md'));
  if (json === undefined || markdown === undefined) throw new Error(`${spec.script} wrote no report in ${out}`);
  ctx.results.standalone ??= [];
  ctx.results.standalone.push({
    scenario,
    command,
    seconds: result.seconds,
    report: JSON.parse(readFileSync(join(out, json), 'utf8')) as unknown,
    markdown: readFileSync(join(out, markdown), 'utf8'),
  });
  ctx.log(`${scenario}: done in ${result.seconds.toFixed(0)} s`);
}
