import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { pidExists } from './lock-file.js';

const run = promisify(execFile);

export interface JvmCommand {
  readonly java: string;
  readonly classpath: string;
  /** Put before `java`, e.g. `taskset -c 0` to pin the JVM to a core. */
  readonly prefix: readonly string[];
  /** Options for every JVM, brokers and tools (the class-data archive). */
  readonly options: readonly string[];
}

/**
 * Starts a broker JVM with its stdout and stderr appended to `outFile`. A detached broker gets a session
 * of its own, so it outlives the command that started it and a Ctrl-C in that command's terminal.
 */
export function spawnBroker(
  jvm: JvmCommand,
  jvmOptions: readonly string[],
  propertiesFile: string,
  outFile: string,
  detached: boolean,
): ChildProcess {
  const out = openSync(outFile, 'a');
  try {
    const [command, ...args] = [
      ...jvm.prefix,
      jvm.java,
      ...jvm.options,
      ...jvmOptions,
      '-cp',
      jvm.classpath,
      'kafka.Kafka',
    ];
    const child = spawn(command ?? jvm.java, [...args, propertiesFile], { detached, stdio: ['ignore', out, out] });
    child.on('error', () => {}); // a failed spawn shows as a dead pid, which the readiness wait reports
    child.unref();
    if (child.pid === undefined) throw new Error(`could not start ${command}`);
    return child;
  } finally {
    closeSync(out);
  }
}

/** Runs a short-lived Kafka tool JVM to completion; tuned to start fast (small heap, C1 only, serial GC). */
export async function runTool(jvm: JvmCommand, log4jFile: string, args: readonly string[]): Promise<string> {
  const options = ['-Xms32m', '-Xmx256m', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1', '-Djava.awt.headless=true'];
  const [command, ...rest] = [...jvm.prefix, jvm.java, ...jvm.options];
  const { stdout } = await run(command ?? jvm.java, [
    ...rest,
    ...options,
    `-Dlog4j2.configurationFile=${log4jFile}`,
    '-cp',
    jvm.classpath,
    ...args,
  ]);
  return stdout;
}

/**
 * Whether `pid` is still the broker started with `propertiesFile`. `ps` (POSIX, also on macOS) rules out a
 * zombie (a container's init may never reap a killed broker) and a pid the system has since given to
 * another process; where there is no `ps`, the pid existing is taken as enough.
 */
export async function isBroker(pid: number, propertiesFile: string): Promise<boolean> {
  if (!pidExists(pid)) return false;
  try {
    const { stdout } = await run('ps', ['-ww', '-o', 'stat=', '-o', 'args=', '-p', String(pid)]);
    const line = stdout.trim();
    return line !== '' && !line.startsWith('Z') && line.includes(propertiesFile);
  } catch (error) {
    const { code } = error as NodeJS.ErrnoException;
    if (code === 'ENOENT') return true;
    return false; // ps exits 1 when the pid is gone
  }
}

/** Sends `signal` and resolves once the process is gone, or throws after `timeoutMs`. */
export async function killAndWait(
  pid: number,
  propertiesFile: string,
  signal: NodeJS.Signals,
  timeoutMs: number,
): Promise<void> {
  try {
    process.kill(pid, signal);
  } catch {
    return; // already gone
  }
  const deadline = Date.now() + timeoutMs;
  while (await isBroker(pid, propertiesFile)) {
    if (Date.now() > deadline) throw new Error(`broker pid ${pid} still runs ${timeoutMs} ms after ${signal}`);
    await sleep(100);
  }
}
