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
