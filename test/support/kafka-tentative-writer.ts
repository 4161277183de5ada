import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT } from './paths.js';

/**
 * A KafkaLog in a process of its own (the compiled one in dist/) that makes one conditional write and leaves
 * it undecided: killed with SIGKILL it is a node that crashed mid-transaction, stopped with SIGSTOP a node
 * that froze. Told `commit`, it commits and reports how that went.
 */
const WRITER = `
import { createInterface } from 'node:readline';
const [moduleUrl, brokers, topic, prefix] = process.argv.slice(1);
const { KafkaLog } = await import(moduleUrl);
const say = (message) => process.stdout.write(JSON.stringify(message) + '\\n');
const log = new KafkaLog({
  brokers: brokers.split(','), topic, partitions: 1, clientId: 'kvs2-test-writer',
  transactionalIdPrefix: prefix, transactionalPoolSize: 1,
});
await log.open(AbortSignal.timeout(30_000));
const tentative = await log.appendTentative(
  [{ key: Buffer.from('tentative'), value: Buffer.from('never visible') }],
  AbortSignal.timeout(15_000),
);
say({ offset: tentative.offset });
for await (const line of createInterface({ input: process.stdin })) {
  if (line !== 'commit') continue;
  try {
    await tentative.commit();
    say({ outcome: 'committed' });
  } catch (error) {
    say({ outcome: 'rejected', code: error.code, message: error.message });
  }
  await log.close();
  process.exit(0);
}
`;

export interface CommitReport {
  readonly outcome: 'committed' | 'rejected';
  readonly code?: string;
  readonly message?: string;
}

export class TentativeWriterProcess {
  readonly #child: ChildProcess;
  readonly #lines: Interface;
  readonly #exited: Promise<unknown>;
  readonly #errors: string[];

  private constructor(child: ChildProcess, lines: Interface, errors: string[]) {
    this.#child = child;
    this.#lines = lines;
    this.#errors = errors;
    this.#exited = once(child, 'exit');
  }

  /**
   * Starts the writer on a one-partition topic, with transactional ids `<prefix>-0`; resolves once its
   * transaction is open, with the offset of its record.
   */
  static async start(
    brokers: readonly string[],
    topic: string,
    prefix: string,
  ): Promise<{ writer: TentativeWriterProcess; offset: number }> {
    const moduleUrl = pathToFileURL(join(REPO_ROOT, 'dist', 'src', 'log', 'kafka', 'kafka-log.js')).href;
    const child = spawn(
      process.execPath,
      ['--input-type=module', '-e', WRITER, moduleUrl, brokers.join(','), topic, prefix],
      { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    const errors: string[] = [];
    child.stderr?.on('data', (chunk: Buffer) => errors.push(chunk.toString()));
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    const writer = new TentativeWriterProcess(child, lines, errors);
    const { offset } = (await writer.#nextMessage()) as { offset: number };
    return { writer, offset };
  }

  /** SIGKILL, as a crash: the transaction stays open at the coordinator. */
  async kill(): Promise<void> {
    if (this.#child.exitCode === null && this.#child.signalCode === null) this.#child.kill('SIGKILL');
    await this.#exited;
  }

  /** SIGSTOP: the process freezes with its connections open. */
  pause(): void {
    this.#child.kill('SIGSTOP');
  }

  resume(): void {
    this.#child.kill('SIGCONT');
  }

  /** Tells the writer to commit; resolves with what its commit() did. */
  async commit(): Promise<CommitReport> {
    const reply = this.#nextMessage();
    this.#child.stdin?.write('commit\n');
    return (await reply) as CommitReport;
  }

  #nextMessage(): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) => {
      const onExit = (code: number | null): void =>
        reject(new Error(`the writer exited (${code}): ${this.#errors.join('')}`));
      this.#child.once('exit', onExit);
      this.#lines.once('line', (line) => {
        this.#child.off('exit', onExit);
        resolve(JSON.parse(line));
      });
    });
  }
}
