import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from './paths.js';

const run = promisify(execFile);
const KAFKA_SCRIPT = join(REPO_ROOT, 'scripts', 'kafka.sh');

/**
 * A Kafka cluster of a test's own, started with scripts/kafka.sh in a private state folder: for tests
 * that stop brokers or need several, without disturbing the cluster other tests share.
 */
export class OwnKafkaCluster {
  readonly brokers: string;
  readonly #env: NodeJS.ProcessEnv;
  readonly #stateDir: string;

  private constructor(brokers: string, stateDir: string, env: NodeJS.ProcessEnv) {
    this.brokers = brokers;
    this.#stateDir = stateDir;
    this.#env = env;
  }

  static async start(brokerCount = 1, extraProperties: readonly string[] = []): Promise<OwnKafkaCluster> {
    const stateDir = await mkdtemp(join(tmpdir(), 'kvs2-kafka-own-'));
    const env = { ...process.env, KVS2_KAFKA_STATE: stateDir, KVS2_KAFKA_EXTRA_PROPS: extraProperties.join('\n') };
    try {
      const { stdout } = await run(KAFKA_SCRIPT, ['up', '--brokers', String(brokerCount)], { env, timeout: 180_000 });
      const line = stdout.split('\n').find((l) => l.startsWith('KAFKA_BROKERS='));
      if (!line) throw new Error(`scripts/kafka.sh up printed no KAFKA_BROKERS line: ${stdout}`);
      return new OwnKafkaCluster(line.slice('KAFKA_BROKERS='.length).trim(), stateDir, env);
    } catch (error) {
      await run(KAFKA_SCRIPT, ['down'], { env, timeout: 60_000 }).catch(() => {});
      await rm(stateDir, { recursive: true, force: true });
      throw error;
    }
  }

  /** Kills broker `id` (1-based) with SIGKILL, as a crash would. */
  async stopBroker(id: number): Promise<void> {
    await run(KAFKA_SCRIPT, ['stop-broker', String(id)], { env: this.#env, timeout: 60_000 });
  }

  /** Restarts broker `id` with its data and ports; resolves once it is registered again. */
  async startBroker(id: number): Promise<void> {
    await run(KAFKA_SCRIPT, ['start-broker', String(id)], { env: this.#env, timeout: 180_000 });
  }

  async stop(): Promise<void> {
    await run(KAFKA_SCRIPT, ['down'], { env: this.#env, timeout: 120_000 }).catch(() => {});
    await rm(this.#stateDir, { recursive: true, force: true });
  }
}
