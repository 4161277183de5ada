import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isBroker, type JvmCommand, killAndWait, runTool, spawnBroker } from './broker-process.js';
import { classArchiveOptions } from './class-archive.js';
import {
  BROKER_LOG4J,
  brokerProperties,
  HOST,
  type NodePorts,
  type SecureListenerConfig,
  TOOLS_LOG4J,
} from './config-files.js';
import { defaultCacheDir, ensureJars, findJava, KAFKA_VERSION, kafkaClasspath } from './jars.js';
import { acquireLock } from './lock-file.js';
import { canBind, pickFreePorts } from './ports.js';
import { registeredBrokers } from './readiness.js';
import {
  makeSecurityFiles,
  readPassword,
  SASL_MECHANISMS,
  SASL_USERNAME,
  SECURITY_DIR,
  type SecurityFiles,
  securityFiles,
} from './security.js';

export interface KafkaClusterOptions {
  /** Where the cluster keeps its state, configuration, data and logs; one cluster per folder. */
  readonly stateDir: string;
  /** Number of combined broker+controller nodes, 1..9 (default 1). */
  readonly brokers?: number;
  /**
   * Two more listeners on every broker: SASL_SSL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and SSL with client
   * certificates required, with certificates and a password made at start (see `security`). Default false.
   */
  readonly secure?: boolean;
  /** Extra broker properties, `key=value` each, appended to every node's configuration. */
  readonly extraProperties?: readonly string[];
  /** JVM heap options per broker; the default depends on the number of brokers. */
  readonly heapOptions?: readonly string[];
  /** More JVM options for every broker. */
  readonly jvmOptions?: readonly string[];
  /** Start JVMs from a class-data archive of Kafka, made once per JDK (default true). */
  readonly classArchive?: boolean;
  /** Kafka's jar cache (default ~/.cache/kvs2/kafka-<version>). */
  readonly cacheDir?: string;
  /** A JDK 17+ to use instead of `java` on PATH. */
  readonly javaHome?: string;
  /** A command that runs each JVM, e.g. `['taskset', '-c', '0']` to pin the brokers to a core. */
  readonly commandPrefix?: readonly string[];
  /**
   * Brokers in a session of their own that outlive this process (the CLI). Otherwise they share this
   * process's group, so a Ctrl-C reaches them, and they are killed when this process exits.
   */
  readonly detached?: boolean;
  /** How long to wait for brokers to accept requests (default 90 s). */
  readonly readyTimeoutMs?: number;
  /** Aborting stops a start in progress and removes what it made. */
  readonly signal?: AbortSignal;
  readonly log?: (line: string) => void;
}

export interface BrokerStatus {
  readonly id: number;
  readonly running: boolean;
  readonly pid: number | null;
  readonly brokerPort: number;
  readonly controllerPort: number;
  /** On a secure cluster only. */
  readonly saslSslPort?: number;
  readonly sslPort?: number;
}

/** How clients reach a secure cluster's listeners; every path is absolute. */
export interface ClusterSecurity {
  /** SASL_SSL listeners, `127.0.0.1:port,...`: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 over TLS. */
  readonly saslSslBootstrap: string;
  /** SSL listeners, `127.0.0.1:port,...`: mutual TLS, a client certificate signed by the CA is required. */
  readonly sslBootstrap: string;
  readonly saslMechanisms: readonly string[];
  /** The CA that signed the brokers' certificate (SAN IP:127.0.0.1, DNS:localhost) and the client's. */
  readonly caFile: string;
  /** A client certificate (CN=kvs2-client) and its unencrypted PKCS#8 key, for the SSL listener. */
  readonly clientCertFile: string;
  readonly clientKeyFile: string;
  /** The SASL user, for every mechanism; its password is in `passwordFile` (mode 0600), never printed. */
  readonly username: string;
  readonly passwordFile: string;
}

interface BrokerState extends NodePorts {
  pid: number | null;
}

interface ClusterState {
  readonly kafkaVersion: string;
  readonly clusterId: string;
  readonly jvm: JvmCommand;
  readonly brokerJvmOptions: readonly string[];
  readonly detached: boolean;
  readonly readyTimeoutMs: number;
  /** Absent in state files written before secure listeners existed: those clusters are not secure. */
  readonly secure?: boolean;
  readonly brokers: BrokerState[];
}

const STATE_FILE = 'cluster.json';
const MAX_START_ATTEMPTS = 3;
const STOP_TIMEOUT_MS = 20_000;
const KILL_TIMEOUT_MS = 10_000;
const PORT_RELEASE_TIMEOUT_MS = 5_000;

class BindFailure extends Error {}

/**
 * A local Apache Kafka cluster (KRaft, combined broker+controller nodes on 127.0.0.1, random free ports)
 * from Maven Central's jars. Its state lives in `stateDir`, so a later process can `attach` to it: the
 * CLI does that for every command, tests and benchmarks hold the object.
 */
export class KafkaCluster {
  readonly stateDir: string;
  readonly #state: ClusterState;
  readonly #log: (line: string) => void;
  readonly #children = new Map<number, ChildProcess>();
  #exitHook: (() => void) | undefined;

  private constructor(stateDir: string, state: ClusterState, log: (line: string) => void) {
    this.stateDir = stateDir;
    this.#state = state;
    this.#log = log;
  }

  /** Starts a cluster and resolves once every broker accepts requests; reuses one of the same size. */
  static async start(options: KafkaClusterOptions): Promise<KafkaCluster> {
    const n = options.brokers ?? 1;
    if (!Number.isInteger(n) || n < 1 || n > 9) throw new Error(`brokers must be a number from 1 to 9, got ${n}`);
    const log = options.log ?? (() => {});
    await mkdir(join(options.stateDir, 'logs'), { recursive: true });
    const release = await acquireLock(join(options.stateDir, '.lock'), 300_000);
    try {
      const existing = await KafkaCluster.#load(options.stateDir, log);
      if (existing !== undefined) {
        const running = (await existing.status()).filter((b) => b.running).map((b) => b.id);
        if (running.length === n && existing.size === n && options.secure === true && !existing.isSecure) {
          throw new Error(`a cluster without secure listeners already runs in ${options.stateDir}; stop it first`);
        }
        if (running.length === n && existing.size === n) {
          log(`a ${n}-broker cluster already runs in ${options.stateDir}; reusing it`);
          return existing;
        }
        if (running.length > 0) {
          throw new Error(
            `a cluster already runs in ${options.stateDir} (brokers: ${existing.size}, running: ${running.join(' ')}); stop it first`,
          );
        }
        log('removing the state of a cluster that no longer runs');
        await existing.#removeFiles();
      }
      const cacheDir = options.cacheDir ?? defaultCacheDir();
      const java = await findJava(options.javaHome);
      await ensureJars(cacheDir, log);
      await writeFile(join(options.stateDir, 'log4j2-broker.properties'), BROKER_LOG4J);
      await writeFile(join(options.stateDir, 'log4j2-tools.properties'), TOOLS_LOG4J);
      const classpath = kafkaClasspath(cacheDir);
      const prefix = options.commandPrefix ?? [];
      const heapOptions = options.heapOptions ?? (n === 1 ? ['-Xms256m', '-Xmx512m'] : ['-Xms192m', '-Xmx384m']);
      const train = async (jvmOption: string) => {
        const stateDir = await mkdtemp(join(tmpdir(), 'kvs2-kafka-training-'));
        try {
          const trainee = await KafkaCluster.start({
            ...options,
            stateDir,
            brokers: 1,
            secure: false,
            extraProperties: [],
            jvmOptions: [jvmOption],
            classArchive: false,
            detached: false,
            log: () => {},
          });
          await trainee.stop();
        } finally {
          await rm(stateDir, { recursive: true, force: true });
        }
      };
      const jvm: JvmCommand = {
        java,
        classpath,
        prefix,
        options: options.classArchive === false ? [] : await classArchiveOptions(java, classpath, cacheDir, train, log),
      };
      const secure = options.secure ?? false;
      const portsPerBroker = secure ? 4 : 2;
      for (let attempt = 1; ; attempt++) {
        const ports = await pickFreePorts(portsPerBroker * n);
        const port = (broker: number, k: number) => ports[portsPerBroker * broker + k] ?? 0;
        const state: ClusterState = {
          kafkaVersion: KAFKA_VERSION,
          clusterId: newClusterId(),
          jvm,
          brokerJvmOptions: [...heapOptions, ...(options.jvmOptions ?? [])],
          detached: options.detached ?? false,
          readyTimeoutMs: options.readyTimeoutMs ?? 90_000,
          ...(secure ? { secure } : {}),
          brokers: Array.from({ length: n }, (_, i) => ({
            id: i + 1,
            brokerPort: port(i, 0),
            controllerPort: port(i, 1),
            ...(secure ? { saslSslPort: port(i, 2), sslPort: port(i, 3) } : {}),
            pid: null,
          })),
        };
        const cluster = new KafkaCluster(options.stateDir, state, log);
        try {
          await cluster.#startAll(options.extraProperties ?? [], options.signal);
          return cluster;
        } catch (error) {
          await cluster.#killAll().catch(() => {});
          await cluster.#removeFiles();
          if (!(error instanceof BindFailure) || attempt === MAX_START_ATTEMPTS) throw error;
          log('a port was taken meanwhile; retrying with other ports');
        }
      }
    } finally {
      await release();
    }
  }

  /** The cluster a previous `start` left in `stateDir`, or undefined when there is none. */
  static async attach(stateDir: string, log: (line: string) => void = () => {}): Promise<KafkaCluster | undefined> {
    return KafkaCluster.#load(stateDir, log);
  }

  static async #load(stateDir: string, log: (line: string) => void): Promise<KafkaCluster | undefined> {
    const file = join(stateDir, STATE_FILE);
    if (!existsSync(file)) return undefined;
    return new KafkaCluster(stateDir, JSON.parse(await readFile(file, 'utf8')) as ClusterState, log);
  }

  get size(): number {
    return this.#state.brokers.length;
  }

  get clusterId(): string {
    return this.#state.clusterId;
  }

  /** The bootstrap list for clients: `127.0.0.1:port,...`, every broker in id order. */
  get bootstrap(): string {
    return this.#state.brokers.map((b) => `${HOST}:${b.brokerPort}`).join(',');
  }

  get isSecure(): boolean {
    return this.#state.secure === true;
  }

  /** How to reach the secure listeners, or undefined when the cluster was started without them. */
  get security(): ClusterSecurity | undefined {
    if (!this.isSecure) return undefined;
    const files = securityFiles(this.stateDir);
    const list = (port: (b: BrokerState) => number | undefined) =>
      this.#state.brokers.map((b) => `${HOST}:${port(b)}`).join(',');
    return {
      saslSslBootstrap: list((b) => b.saslSslPort),
      sslBootstrap: list((b) => b.sslPort),
      saslMechanisms: SASL_MECHANISMS,
      caFile: files.caFile,
      clientCertFile: files.clientCertFile,
      clientKeyFile: files.clientKeyFile,
      username: SASL_USERNAME,
      passwordFile: files.passwordFile,
    };
  }

  /** Kafka's jars, for running its tools (e.g. ProducerPerformance) against this cluster. */
  get classpath(): string {
    return this.#state.jvm.classpath;
  }

  /** A Log4j 2 configuration for Kafka's tools: warnings to stderr only. */
  get toolsLog4jFile(): string {
    return join(this.stateDir, 'log4j2-tools.properties');
  }

  /** The pids of the brokers started and not stopped since (they may have died on their own). */
  brokerPids(): number[] {
    return this.#state.brokers.flatMap((b) => (b.pid === null ? [] : [b.pid]));
  }

  async status(): Promise<BrokerStatus[]> {
    return Promise.all(
      this.#state.brokers.map(async (b) => ({
        id: b.id,
        running: await this.#isRunning(b),
        pid: b.pid,
        brokerPort: b.brokerPort,
        controllerPort: b.controllerPort,
        ...(b.saslSslPort === undefined ? {} : { saslSslPort: b.saslSslPort }),
        ...(b.sslPort === undefined ? {} : { sslPort: b.sslPort }),
      })),
    );
  }

  /** Kills broker `id` (1-based) with SIGKILL, as a crash would, and waits until it is gone. */
  async stopBroker(id: number): Promise<void> {
    await this.#locked(async () => {
      const broker = this.#broker(id);
      if (broker.pid !== null) await killAndWait(broker.pid, this.#propertiesFile(id), 'SIGKILL', KILL_TIMEOUT_MS);
      broker.pid = null;
      await this.#save();
    });
  }

  /** Restarts broker `id` with its ports and data; resolves once it is registered again. */
  async startBroker(id: number, signal?: AbortSignal): Promise<void> {
    await this.#locked(async () => {
      const broker = this.#broker(id);
      if (await this.#isRunning(broker)) return;
      for (const port of [broker.brokerPort, broker.controllerPort, broker.saslSslPort, broker.sslPort]) {
        if (port !== undefined) await this.#waitUntilFree(port, id, signal);
      }
      this.#spawn(broker);
      await this.#save();
      await this.#waitReady([id], signal);
    });
  }

  /**
   * A broker killed a moment ago may still hold its ports for some milliseconds: `ps` shows its main thread
   * a zombie (so `stopBroker` returned) while its other threads are still exiting with the sockets open.
   */
  async #waitUntilFree(port: number, id: number, signal: AbortSignal | undefined): Promise<void> {
    const deadline = Date.now() + PORT_RELEASE_TIMEOUT_MS;
    while (!(await canBind(port))) {
      if (Date.now() > deadline) throw new Error(`port ${port} of broker ${id} is taken by another process`);
      await sleep(50, undefined, { signal });
    }
  }

  /** Freezes broker `id` with SIGSTOP: its connections stay open but nothing answers, as in a long GC pause. */
  async pauseBroker(id: number): Promise<void> {
    this.#signal(id, 'SIGSTOP');
  }

  /** Lets a paused broker `id` run again (SIGCONT). */
  async resumeBroker(id: number): Promise<void> {
    this.#signal(id, 'SIGCONT');
  }

  /**
   * Stops every broker (SIGTERM for a controlled shutdown, SIGKILL for those still running after 20 s:
   * when the whole quorum stops at once, the last nodes may wait for a controller that is gone) and
   * deletes the data and state. The logs stay in `<stateDir>/logs`.
   */
  async stop(): Promise<void> {
    await this.#locked(async () => {
      const running = (await this.status()).filter((b) => b.running);
      this.#resume(running);
      const stopped = await Promise.allSettled(
        running.flatMap((b) =>
          b.pid === null ? [] : [killAndWait(b.pid, this.#propertiesFile(b.id), 'SIGTERM', STOP_TIMEOUT_MS)],
        ),
      );
      if (stopped.some((s) => s.status === 'rejected')) {
        this.#log(`brokers still running ${STOP_TIMEOUT_MS / 1000} s after SIGTERM; sending SIGKILL`);
        await this.#killAll();
      }
      await this.#removeFiles();
    });
  }

  async #startAll(extraProperties: readonly string[], signal: AbortSignal | undefined): Promise<void> {
    const { brokers, clusterId } = this.#state;
    await this.#save();
    const security = this.isSecure ? await this.#makeSecurity() : undefined;
    await Promise.all(
      brokers.map(async (b) => {
        const file = this.#propertiesFile(b.id);
        const dataDir = join(this.#dataDir, `broker-${b.id}`);
        await writeFile(file, brokerProperties(b, brokers, dataDir, extraProperties, security?.listeners));
        // It holds the SASL password (PLAIN's user list).
        if (security !== undefined) await chmod(file, 0o600);
        await writeFile(this.#outFile(b.id), '');
        await writeFile(this.#logFile(b.id), '');
      }),
    );
    this.#log(`formatting storage for ${brokers.length} node(s), cluster id ${clusterId}`);
    // Every node's storage gets the same cluster id; in parallel, since each format is a JVM start.
    await Promise.all(
      brokers.map((b) =>
        runTool(this.#state.jvm, this.toolsLog4jFile, [
          'kafka.tools.StorageTool',
          'format',
          '-t',
          clusterId,
          '-c',
          this.#propertiesFile(b.id),
          // SCRAM credentials are metadata records; the password is on this short-lived command line only.
          ...(security?.scramArguments ?? []),
        ]),
      ),
    );
    signal?.throwIfAborted();
    this.#log(`starting ${brokers.length} broker(s) on ${this.bootstrap}`);
    for (const b of brokers) this.#spawn(b);
    await this.#save();
    await this.#waitReady(
      brokers.map((b) => b.id),
      signal,
    );
    this.#log(`cluster ready (state, data and logs in ${this.stateDir})`);
  }

  async #makeSecurity(): Promise<{ listeners: SecureListenerConfig; scramArguments: string[] }> {
    this.#log(`making certificates and a password in ${join(this.stateDir, SECURITY_DIR)}`);
    const files: SecurityFiles = await makeSecurityFiles(this.stateDir);
    const password = await readPassword(files);
    return {
      listeners: {
        keystoreFile: files.brokerKeystoreFile,
        truststoreFile: files.caFile,
        username: SASL_USERNAME,
        password,
      },
      // Quoted as Kafka's documentation shows (StorageTool strips the quotes); base64url needs no escaping.
      scramArguments: ['SCRAM-SHA-256', 'SCRAM-SHA-512'].flatMap((mechanism) => [
        '--add-scram',
        `${mechanism}=[name=${SASL_USERNAME},password="${password}"]`,
      ]),
    };
  }

  #spawn(broker: BrokerState): void {
    const { jvm, brokerJvmOptions, detached } = this.#state;
    const options = [
      ...brokerJvmOptions,
      '-XX:+UseG1GC',
      '-XX:MaxGCPauseMillis=20',
      '-XX:InitiatingHeapOccupancyPercent=35',
      '-XX:+ExplicitGCInvokesConcurrent',
      '-XX:+ExitOnOutOfMemoryError',
      '-Djava.awt.headless=true',
      `-Dlog4j2.configurationFile=${join(this.stateDir, 'log4j2-broker.properties')}`,
      `-Dkvs2.broker.log=${this.#logFile(broker.id)}`,
    ];
    const child = spawnBroker(jvm, options, this.#propertiesFile(broker.id), this.#outFile(broker.id), detached);
    broker.pid = child.pid ?? null;
    this.#children.set(broker.id, child);
    if (!detached && this.#exitHook === undefined) {
      // Brokers of a process that exits without stop() (a failed test) must not outlive it.
      this.#exitHook = () => {
        for (const c of this.#children.values()) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      };
      process.once('exit', this.#exitHook);
    }
  }

  /** Waits until every broker in `ids` answers a Metadata request that lists all of `ids` as registered. */
  async #waitReady(ids: readonly number[], signal: AbortSignal | undefined): Promise<void> {
    const timeoutMs = this.#state.readyTimeoutMs;
    const deadline = Date.now() + timeoutMs;
    this.#log(`waiting up to ${timeoutMs / 1000} s for broker(s) ${ids.join(' ')} to accept requests`);
    for (;;) {
      for (const id of ids) {
        if (await this.#isRunning(this.#broker(id))) continue;
        const output = await this.#logTail(id);
        if (/BindException|Address already in use/.test(output)) throw new BindFailure(`broker ${id} could not bind`);
        throw new Error(`broker ${id} exited during start-up; the end of its logs:\n${output}`);
      }
      const answers = await Promise.all(ids.map((id) => registeredBrokers(`${HOST}:${this.#broker(id).brokerPort}`)));
      if (answers.every((registered) => ids.every((id) => registered.includes(id)))) return;
      if (Date.now() > deadline) {
        const tails = await Promise.all(ids.map(async (id) => `broker ${id}:\n${await this.#logTail(id)}`));
        throw new Error(`brokers not ready after ${timeoutMs / 1000} s; the end of their logs:\n${tails.join('\n')}`);
      }
      await sleep(250, undefined, { signal });
    }
  }

  /** The process handle knows for sure while this process started the broker; otherwise ask the system. */
  async #isRunning(broker: BrokerState): Promise<boolean> {
    if (broker.pid === null) return false;
    const child = this.#children.get(broker.id);
    if (child?.pid === broker.pid) return child.exitCode === null && child.signalCode === null;
    return isBroker(broker.pid, this.#propertiesFile(broker.id));
  }

  async #logTail(id: number): Promise<string> {
    const read = (file: string) => readFile(file, 'utf8').catch(() => '');
    const text = `${await read(this.#outFile(id))}${await read(this.#logFile(id))}`;
    return text.trimEnd().split('\n').slice(-20).join('\n');
  }

  #signal(id: number, signal: NodeJS.Signals): void {
    const pid = this.#broker(id).pid;
    if (pid === null) throw new Error(`broker ${id} is not running`);
    process.kill(pid, signal);
  }

  /** A stopped (SIGSTOP) process cannot handle SIGTERM: wake every broker up before stopping it. */
  #resume(brokers: readonly BrokerStatus[]): void {
    for (const b of brokers) if (b.pid !== null) process.kill(b.pid, 'SIGCONT');
  }

  async #killAll(): Promise<void> {
    await Promise.allSettled(
      this.#state.brokers.map((b) =>
        b.pid === null ? undefined : killAndWait(b.pid, this.#propertiesFile(b.id), 'SIGKILL', KILL_TIMEOUT_MS),
      ),
    );
  }

  async #removeFiles(): Promise<void> {
    if (this.#exitHook !== undefined) process.removeListener('exit', this.#exitHook);
    this.#exitHook = undefined;
    await rm(this.#dataDir, { recursive: true, force: true });
    for (const b of this.#state.brokers) await rm(this.#propertiesFile(b.id), { force: true });
    await rm(join(this.stateDir, SECURITY_DIR), { recursive: true, force: true });
    await rm(join(this.stateDir, STATE_FILE), { force: true });
  }

  async #locked(action: () => Promise<void>): Promise<void> {
    const release = await acquireLock(join(this.stateDir, '.lock'), 300_000);
    try {
      await action();
    } finally {
      await release();
    }
  }

  async #save(): Promise<void> {
    const file = join(this.stateDir, STATE_FILE);
    await writeFile(`${file}.tmp`, `${JSON.stringify(this.#state, null, 2)}\n`);
    await rename(`${file}.tmp`, file);
  }

  #broker(id: number): BrokerState {
    const broker = this.#state.brokers[id - 1];
    if (!Number.isInteger(id) || broker === undefined) throw new Error(`broker id must be 1..${this.size}, got ${id}`);
    return broker;
  }

  get #dataDir(): string {
    return join(this.stateDir, 'data');
  }

  #propertiesFile(id: number): string {
    return join(this.stateDir, `broker-${id}.properties`);
  }

  #outFile(id: number): string {
    return join(this.stateDir, 'logs', `broker-${id}.out`);
  }

  #logFile(id: number): string {
    return join(this.stateDir, 'logs', `broker-${id}.log`);
  }
}

/** A Kafka cluster id: 16 random bytes, base64url; never starting with '-', which would read as an option. */
function newClusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}
