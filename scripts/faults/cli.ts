import { Command, InvalidArgumentError } from 'commander';
import { runFaultCheck } from './run.js';

/**
 * `npm run faults -- --duration 10m --seed N`: a long fault-injection run on a cluster of its own
 * (3 brokers, 3 nodes). Prints a summary and, on a violation, the history that shows it; exits 1 then.
 */

function duration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (match === null) throw new InvalidArgumentError('a duration is a number with ms, s, m or h, e.g. 10m');
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(match[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  return Number(match[1]) * unit;
}

function integer(text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0) throw new InvalidArgumentError('a whole number from 0');
  return value;
}

const program = new Command('npm run faults --')
  .description('Fault-injection check of kvs2 on 3 brokers and 3 nodes: nothing acknowledged lost, every node alike')
  .option('--duration <time>', 'how long the load and the faults run (e.g. 90s, 10m)', duration, 600_000)
  .option('--seed <n>', 'seed of the keys, nodes and faults chosen', integer, Math.floor(Math.random() * 1_000_000))
  .option('--writers <n>', 'concurrent writers', integer, 4)
  .option('--readers <n>', 'concurrent readers', integer, 3)
  .option('--keys <n>', 'number of keys written', integer, 24)
  .option('--work-dir <dir>', 'where brokers and nodes keep data and logs (default: a temporary folder)')
  .option('--keep', 'keep the work folder even when the run passes')
  .action(
    async (options: {
      duration: number;
      seed: number;
      writers: number;
      readers: number;
      keys: number;
      workDir?: string;
      keep?: boolean;
    }) => {
      const log = (line: string) => process.stderr.write(`faults: ${line}\n`);
      log(`seed ${options.seed}`);
      const result = await runFaultCheck({
        seed: options.seed,
        loadMs: options.duration,
        writers: options.writers,
        readers: options.readers,
        keys: options.keys,
        ...(options.workDir === undefined ? {} : { workDir: options.workDir }),
        keepWorkDir: options.keep === true,
        log,
      });
      process.stdout.write(`${result.report}\n`);
      process.exitCode = result.ok ? 0 : 1;
    },
  );

await program.parseAsync();
