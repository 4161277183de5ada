/**
 * The embedded log alone, without gRPC or the store: `--writers` appenders each waiting for its append
 * before the next (as `Set`s at that many in flight do) and one reader following the end, as the replica
 * does, releasing what it read. Prints one JSON line: appends/s, CPU per append (all threads, and split
 * by thread kind). `--tree` runs another build's log (a copy made with
 * bench/snapshot-build.sh), so two builds can be measured alternately:
 *
 *   for i in 1 2 3; do for t in /tmp/base .; do node dist/bench/embedded-log-appends.js --tree $t; done; done
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import type { Log } from '../src/log/log.js';
import { REPO_DIR } from './lib/tree.js';

const options = new Command('embedded-log-appends')
  .option('--tree <dir>', 'the build whose log to measure', REPO_DIR)
  .option('--writers <n>', 'appenders, each waiting for its append', Number, 64)
  .option('--seconds <s>', 'measured time', Number, 5)
  .option('--value-bytes <n>', 'value size', Number, 100)
  .parse()
  .opts<{ tree: string; writers: number; seconds: number; valueBytes: number }>();

const module = (await import(resolve(options.tree, 'dist/src/log/embedded/embedded-log.js'))) as {
  EmbeddedLog: new (o: { dir: string }) => Log;
};
const dir = mkdtempSync(join(tmpdir(), 'kvs2-log-appends-'));
const log = new module.EmbeddedLog({ dir });
await log.open();

function threadCpu(): Map<string, number> {
  const byName = new Map<string, number>();
  for (const tid of readdirSync('/proc/self/task')) {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const label = tid === String(process.pid) ? 'main' : name.replace(/[0-9]+$/, '').trim();
    byName.set(label, (byName.get(label) ?? 0) + (Number(fields[11]) + Number(fields[12])) / 100);
  }
  return byName;
}

const stop = new AbortController();
const reading = (async () => {
  let applied = 0;
  try {
    for await (const batch of log.read(new Map(), stop.signal)) {
      applied += batch.records.length;
      log.releaseBefore(batch.nextOffsets);
    }
  } catch {
    // Stopped.
  }
  return applied;
})();

const value = Buffer.alloc(options.valueBytes, 0x61);
let appended = 0;
let measuring = false;
let running = true;
const writer = async (w: number): Promise<void> => {
  for (let i = 0; running; i++) {
    await log.append(Buffer.from(`key:${String((w * 7919 + i) % 100_000).padStart(12, '0')}`), value, stop.signal);
    if (measuring) appended++;
  }
};
const writers = Array.from({ length: options.writers }, (_, w) => writer(w));
await new Promise((r) => setTimeout(r, 1000));
const before = threadCpu();
const started = performance.now();
measuring = true;
await new Promise((r) => setTimeout(r, options.seconds * 1000));
measuring = false;
const seconds = (performance.now() - started) / 1000;
const after = threadCpu();
running = false;
await Promise.all(writers);
stop.abort();
await reading;
await log.close();
rmSync(dir, { recursive: true, force: true });

const perAppend: Record<string, number> = {};
let total = 0;
for (const [name, cpu] of after) {
  const used = cpu - (before.get(name) ?? 0);
  total += used;
  if (used > 0) perAppend[name] = Math.round((used / appended) * 1e7) / 10;
}
process.stdout.write(
  `${JSON.stringify({
    tree: options.tree,
    appendsPerSec: Math.round(appended / seconds),
    cpuUsPerAppend: Math.round((total / appended) * 1e7) / 10,
    threadsUsPerAppend: perAppend,
  })}\n`,
);
