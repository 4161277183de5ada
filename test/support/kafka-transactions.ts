import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { FetchIsolationLevels, type fetchV17, IS_CONTROL, Producer } from '@platformatic/kafka';
import { createConsumer, type Kvs2Consumer } from '../../src/log/kafka/kafka-clients.js';
import type { KafkaLog } from '../../src/log/kafka/kafka-log.js';
import type { LogRecord } from '../../src/log/log.js';
import type { Offsets } from '../../src/offsets.js';
import { REPO_ROOT } from './paths.js';

/**
 * What the transaction tests (test/log/kafka/transactions.test.ts) share: transactional producers as
 * compare-and-set on Kafka (issue 18, design d) would use them, a reader that follows a KafkaLog and
 * notes when each record and position arrived, raw fetches to look at what a partition holds, and a
 * writer in a process of its own that can be killed mid-transaction.
 */

export type TransactionalProducer = Producer<Buffer, Buffer, Buffer, Buffer>;
export type OpenTransaction = Awaited<ReturnType<TransactionalProducer['beginTransaction']>>;

export interface TransactionalProducerOptions {
  /**
   * The library sends its `timeout` option (also the produce acknowledgement timeout) as the
   * transaction timeout in InitProducerId: the broker aborts a transaction open longer than this.
   */
  readonly transactionTimeoutMs?: number;
  /** Delay between retries, e.g. of InitProducerId answered CONCURRENT_TRANSACTIONS (library default 1000). */
  readonly retryDelayMs?: number;
  /** Told of every request the library is about to retry, and why. */
  readonly onRetry?: (operation: string, error: Error) => void;
}

export function createTransactionalProducer(
  brokers: readonly string[],
  transactionalId: string,
  options: TransactionalProducerOptions = {},
): TransactionalProducer {
  return new Producer<Buffer, Buffer, Buffer, Buffer>({
    clientId: 'kvs2-test-transactions',
    bootstrapBrokers: [...brokers],
    idempotent: true,
    transactionalId,
    timeout: options.transactionTimeoutMs ?? 10_000,
    retries: 20,
    retryDelay: (_client, operation, _attempt, _retries, error) => {
      options.onRetry?.(operation, error);
      return options.retryDelayMs ?? 50;
    },
    autocreateTopics: false,
  });
}

/**
 * Begins a transaction, registering the producer with producer id -1 and epoch -1 if it has not been yet.
 * The library's default sends producer id 0 and epoch 0, which the coordinator reads as "I am producer 0,
 * epoch 0" and answers PRODUCER_FENCED once the transactional id belongs to any other producer id (that
 * is: a restarted node, or a producer that sent outside a transaction since).
 */
export function beginFencing(producer: TransactionalProducer): Promise<OpenTransaction> {
  return producer.beginTransaction({ producerId: -1n, producerEpoch: -1 });
}

/** Produces one record in `transaction` and returns its offset, as the produce response gives it. */
export async function produceOne(
  transaction: OpenTransaction,
  topic: string,
  partition: number,
  key: string,
  value: string,
): Promise<number> {
  const result = await transaction.send({
    messages: [{ topic, partition, key: Buffer.from(key), value: Buffer.from(value) }],
  });
  const acknowledged = result.offsets?.find((o) => o.topic === topic && o.partition === partition);
  if (acknowledged === undefined) throw new Error(`no offset acknowledged for ${topic}-${partition}`);
  return Number(acknowledged.offset);
}

export interface FollowedRecord extends LogRecord {
  /** performance.now() when the batch holding it arrived. */
  readonly at: number;
}

/**
 * Reads a KafkaLog in the background through kvs2's own reader (TopicReader, decodePartition) and keeps
 * every record and each partition's position (next offset to read), with when each arrived.
 */
export class LogFollower {
  readonly records: FollowedRecord[] = [];
  readonly #positions = new Map<number, { offset: number; at: number }>();
  readonly #stop = new AbortController();
  readonly #reading: Promise<void>;
  #failure: unknown;
  #waiters = new Set<() => void>();

  constructor(log: KafkaLog, from: Offsets = new Map()) {
    this.#reading = (async () => {
      for await (const batch of log.read(from, this.#stop.signal)) {
        const at = performance.now();
        for (const record of batch.records) this.records.push({ ...record, at });
        for (const [partition, offset] of batch.nextOffsets) this.#positions.set(partition, { offset, at });
        this.#notify();
      }
    })().catch((error: unknown) => {
      this.#failure = error;
      this.#notify();
    });
  }

  /** The next offset the reader will read in `partition` (0 before it read anything there). */
  position(partition: number): number {
    return this.#positions.get(partition)?.offset ?? 0;
  }

  /** When the position of `partition` last moved (performance.now()). */
  movedAt(partition: number): number | undefined {
    return this.#positions.get(partition)?.at;
  }

  /** Resolves as soon as `condition` holds after a batch arrives (or now); rejects after `timeoutMs`. */
  async waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
      if (this.#failure !== undefined)
        throw new Error(`the reader failed while waiting for ${what}`, { cause: this.#failure });
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${what}: not within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(done, left);
        this.#waiters.add(done);
      });
    }
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#reading;
  }

  #notify(): void {
    const waiters = this.#waiters;
    this.#waiters = new Set();
    for (const wake of waiters) wake();
  }
}

/**
 * Single fetch requests to the leader of a one-broker cluster, to look at a partition as the broker serves
 * it: read_committed through the same client kvs2 uses (its answer is what decodePartition is given), or
 * read_uncommitted to see every batch the log holds, aborted ones included.
 */
export class RawPartitionReader {
  #consumer: Kvs2Consumer;
  readonly #brokers: readonly string[];
  readonly #topicId: string;
  readonly #topic: string;

  constructor(brokers: readonly string[], topic: string, topicId: string) {
    this.#brokers = brokers;
    this.#consumer = createConsumer({ clientId: 'kvs2-test-raw', brokers }, 'raw', 1_000);
    this.#topic = topic;
    this.#topicId = topicId;
  }

  async fetch(
    partition: number,
    fetchOffset: bigint,
    isolation: 'committed' | 'uncommitted',
    maxWaitMs = 100,
    fresh = false,
  ): Promise<fetchV17.FetchResponsePartition> {
    const metadata = await this.#consumer.metadata({ topics: [this.#topic] });
    const node = metadata.topics.get(this.#topic)?.partitions[partition]?.leader;
    if (node === undefined) throw new Error(`no leader for ${this.#topic}-${partition}`);
    const response = await this.#consumer.fetch({
      node,
      topics: [
        {
          topicId: this.#topicId,
          partitions: [
            { partition, fetchOffset, currentLeaderEpoch: -1, lastFetchedEpoch: -1, partitionMaxBytes: 1 << 20 },
          ],
        },
      ],
      maxWaitTime: maxWaitMs,
      minBytes: 1,
      maxBytes: 1 << 20,
      isolationLevel:
        isolation === 'committed' ? FetchIsolationLevels.READ_COMMITTED : FetchIsolationLevels.READ_UNCOMMITTED,
    });
    const data = response.responses.find((t) => t.topicId === this.#topicId)?.partitions[0];
    if (data === undefined) {
      // The library keeps a fetch session per broker, and an incremental fetch leaves out a partition
      // that has not changed since the previous one: ask again in a new session, which answers in full.
      if (fresh) throw new Error(`the fetch brought no answer for ${this.#topic}-${partition}`);
      await this.#consumer.close();
      this.#consumer = createConsumer({ clientId: 'kvs2-test-raw', brokers: this.#brokers }, 'raw', 1_000);
      return this.fetch(partition, fetchOffset, isolation, maxWaitMs, true);
    }
    return data;
  }

  /** Every data record (not control) the partition holds, aborted ones included, by offset. */
  async allDataRecords(partition: number): Promise<Array<{ offset: number; key: string; value: string | null }>> {
    const found: Array<{ offset: number; key: string; value: string | null }> = [];
    let next = 0n;
    for (;;) {
      const data = await this.fetch(partition, next, 'uncommitted');
      const batches = data.records ?? [];
      if (batches.length === 0) return found;
      for (const batch of batches) {
        const isControl = (batch.attributes & IS_CONTROL) !== 0;
        for (const record of batch.records) {
          const offset = batch.firstOffset + BigInt(record.offsetDelta);
          if (offset < next || isControl) continue;
          found.push({
            offset: Number(offset),
            key: record.key?.toString() ?? '',
            value: record.value?.toString() ?? null,
          });
        }
        next = batch.firstOffset + BigInt(batch.lastOffsetDelta) + 1n;
      }
      if (next >= data.highWatermark) return found;
    }
  }

  close(): Promise<void> {
    return this.#consumer.close();
  }
}

/**
 * A writer in a process of its own that opens a transaction, produces one record and then waits forever
 * without committing: killing it with SIGKILL leaves the transaction open, as a crashed node would.
 */
const ORPHAN_WRITER = `
import { Producer } from '@platformatic/kafka';
const [brokers, transactionalId, topic, partition, timeoutMs] = process.argv.slice(1);
const producer = new Producer({
  clientId: 'kvs2-test-orphan', bootstrapBrokers: brokers.split(','), idempotent: true, transactionalId,
  timeout: Number(timeoutMs), retries: 20, retryDelay: 50, autocreateTopics: false,
});
const transaction = await producer.beginTransaction({ producerId: -1n, producerEpoch: -1 });
const result = await transaction.send({
  messages: [{ topic, partition: Number(partition), key: Buffer.from('orphan'), value: Buffer.from('never visible') }],
});
process.stdout.write(JSON.stringify({ offset: String(result.offsets[0].offset) }) + '\\n');
setInterval(() => {}, 1 << 30);
`;

export class OrphanedTransactionWriter {
  readonly #child: ChildProcess;
  readonly #exited: Promise<unknown>;

  private constructor(child: ChildProcess) {
    this.#child = child;
    this.#exited = once(child, 'exit');
  }

  /** Resolves with the writer and the offset of its record once its transaction is open. */
  static async start(
    brokers: readonly string[],
    transactionalId: string,
    topic: string,
    partition: number,
    transactionTimeoutMs: number,
  ): Promise<{ writer: OrphanedTransactionWriter; offset: number }> {
    const args = [brokers.join(','), transactionalId, topic, String(partition), String(transactionTimeoutMs)];
    const child = spawn(process.execPath, ['--input-type=module', '-e', ORPHAN_WRITER, ...args], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const writer = new OrphanedTransactionWriter(child);
    const errors: string[] = [];
    child.stderr?.on('data', (chunk: Buffer) => errors.push(chunk.toString()));
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    const offset = await new Promise<number>((resolve, reject) => {
      lines.once('line', (line) => resolve(Number((JSON.parse(line) as { offset: string }).offset)));
      child.once('exit', (code) => reject(new Error(`the writer exited (${code}): ${errors.join('')}`)));
    });
    return { writer, offset };
  }

  /** SIGKILL, as a crash: the transaction stays open at the coordinator. */
  async kill(): Promise<void> {
    if (this.#child.exitCode === null && this.#child.signalCode === null) this.#child.kill('SIGKILL');
    await this.#exited;
  }
}

/** Median and the largest of a list of durations, for diagnostics. */
export function summarize(durationsMs: readonly number[]): string {
  const sorted = [...durationsMs].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
  const fmt = (v: number) => v.toFixed(1);
  return `n=${sorted.length} median ${fmt(at(0.5))} ms, p90 ${fmt(at(0.9))} ms, p99 ${fmt(at(0.99))} ms, max ${fmt(sorted.at(-1) ?? Number.NaN)} ms`;
}
