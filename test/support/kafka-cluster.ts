import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ClusterSecurity, KafkaCluster } from '../../scripts/kafka/cluster.js';

/**
 * A Kafka cluster of a test's own, in a private state folder: for tests that stop brokers or need several,
 * without disturbing the cluster other tests share. Its brokers die with the test process.
 */
export class OwnKafkaCluster {
  /** The bootstrap list, `127.0.0.1:port,...`. */
  readonly brokers: string;
  /**
   * With `{ secure: true }`: the SASL_SSL and SSL listeners, the CA, the client certificate and the SASL
   * user's password file (see ClusterSecurity); undefined otherwise.
   */
  readonly security: ClusterSecurity | undefined;
  readonly #cluster: KafkaCluster;

  private constructor(cluster: KafkaCluster) {
    this.#cluster = cluster;
    this.brokers = cluster.bootstrap;
    this.security = cluster.security;
  }

  static async start(
    brokerCount = 1,
    extraProperties: readonly string[] = [],
    options: { readonly secure?: boolean } = {},
  ): Promise<OwnKafkaCluster> {
    const stateDir = await mkdtemp(join(tmpdir(), 'kvs2-kafka-own-'));
    try {
      const secure = options.secure ?? false;
      return new OwnKafkaCluster(await KafkaCluster.start({ stateDir, brokers: brokerCount, extraProperties, secure }));
    } catch (error) {
      await rm(stateDir, { recursive: true, force: true });
      throw error;
    }
  }

  /** Kills broker `id` (1-based) with SIGKILL, as a crash would. */
  stopBroker(id: number): Promise<void> {
    return this.#cluster.stopBroker(id);
  }

  /** Restarts broker `id` with its data and ports; resolves once it is registered again. */
  startBroker(id: number): Promise<void> {
    return this.#cluster.startBroker(id);
  }

  /** Freezes broker `id` (SIGSTOP): connections stay open, nothing answers. */
  pauseBroker(id: number): Promise<void> {
    return this.#cluster.pauseBroker(id);
  }

  resumeBroker(id: number): Promise<void> {
    return this.#cluster.resumeBroker(id);
  }

  async stop(): Promise<void> {
    await this.#cluster.stop().catch(() => {});
    await rm(this.#cluster.stateDir, { recursive: true, force: true });
  }
}
