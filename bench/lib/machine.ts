import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';

function tryRun(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

/** What the numbers were measured on. */
export function describeMachine(repoDir: string): Record<string, string | number> {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  return {
    cores: Number(tryRun('nproc', [])) || cpus().length,
    cpuModel: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? 'unknown',
    cpuMHz: Number(/^cpu MHz\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? 0),
    memoryBytes: totalmem(),
    kernel: release(),
    node: process.version,
    loadAverage: loadavg()
      .map((l) => l.toFixed(2))
      .join(' '),
    tmpFilesystem: tryRun('stat', ['-f', '-c', '%T', tmpdir()]),
    gitCommit: treeCommit(repoDir),
  };
}

/** The commit a checkout is at, and whether it has uncommitted changes. */
export function treeCommit(repoDir: string): string {
  const dirty = tryRun('git', ['-C', repoDir, 'status', '--porcelain']) !== '';
  return `${tryRun('git', ['-C', repoDir, 'rev-parse', '--short', 'HEAD'])}${dirty ? ' (with uncommitted changes)' : ''}`;
}

/**
 * The machine line the suite's Markdown prints (bench/report/markdown.ts), for the focused scripts: the
 * machine from `describeMachine` (with `loadAverageAtEnd` if known) and the tool versions of bench/setup.sh.
 */
export function machineLine(machine: Record<string, string | number>, tools: Record<string, string>): string {
  const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(0);
  const oneMinute = Number(String(machine.loadAverage).split(' ')[0]);
  const cores = Number(machine.cores);
  const busy = oneMinute > cores ? ` (above ${cores} at the start: the machine was busy just before or still is)` : '';
  return (
    `Machine: ${machine.cpuModel}, ${machine.cores} cores, ${mib(Number(machine.memoryBytes))} MiB RAM, Linux ${machine.kernel}, ` +
    `Node ${machine.node}, tmp on ${machine.tmpFilesystem}, load average ${machine.loadAverage} at the start` +
    `${machine.loadAverageAtEnd ? ` and ${machine.loadAverageAtEnd} at the end` : ''}${busy}. ` +
    `Tree: ${machine.gitCommit}. Tools: ${Object.entries(tools)
      .filter(([k]) => k.endsWith('version'))
      .map(([k, v]) => `${k.replace('_version', '')} ${v}`)
      .join(', ')}.`
  );
}
