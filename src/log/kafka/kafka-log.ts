import type { Admin, Broker } from '@platformatic/kafka';
import { FetchIsolationLevels } from '@platformatic/kafka';
import { pause, raceAbort } from '../../abort.js';
import { abortError, describeError, Kvs2Error } from '../../errors.js';
import type { Offsets } from '../../offsets.js';
import type { Log, LogBatch, LogPosition, LogWrite, TentativeAppend } from '../log.js';
import { AppendBatcher } from './append-batcher.js';
import { type ClientTarget, createAdmin, createConsumer, type Kvs2Consumer } from './kafka-clients.js';
import { describeKafkaError, isPermanentKafkaError } from './kafka-errors.js';
import { type KafkaLogOptions, type KafkaLogSettings, resolveKafkaLogOptions } from './kafka-log-options.js';
import { offsetToNumber } from './kafka-offsets.js';
import { partitionForKey } from './murmur2-partitioner.js';
import { createTopicIfMissing, keepsEveryKey, readTopicSettings, type TopicSettings } from './topic-admin.js';
import { fetchTopicLayout, metadataCandidates, parseBrokers, type TopicLayout } from './topic-metadata.js';
import { TopicProducer } from './topic-producer.js';
import { TopicReader } from './topic-reader.js';
import { TransactionalWriters } from './transactional-writers.js';

/** Room for the record batch header and one record's framing around its key and value. */
const RECORD_FRAMING_BYTES = 1024;
/** A record batch's header, and (at most, rounded up) each record's framing inside it: length, deltas, sizes. */
const BATCH_HEADER_BYTES = 61;
const BATCHED_RECORD_FRAMING_BYTES = 64;
/** Most record bytes one produce request carries, unless a single record is larger. */
const MAX_SEND_BYTES = 16 * 1024 * 1024;
/** While records flow, a fetch returns once this much has gathered, or after fetchFlowingWaitMs. */
const FLOWING_FETCH_MIN_BYTES = 256 * 1024;
/** How long open() waits for a topic it just created to have leaders everywhere. */
const NEW_TOPIC_READY_TIMEOUT_MS = 30_000;

/**
 * The log on a Kafka topic: compacted, many partitions, shared by every node. Appends are keyed records
 * (a null value is a tombstone) placed with Java's murmur2 partitioner and sent by an idempotent
 * producer with acks=all, many appends per produce request. Every node reads every partition itself,
 * without consumer groups, from the offsets its store keeps.
 *
 * An append goes top to bottom: append() picks the partition, the AppendBatcher groups it with others
 * and retries failed requests while its caller's signal allows, the TopicProducer makes each produce
 * request and reads the offsets from the answer. A conditional write's records (appendTentative) go in a
 * transaction of their own, through a pool of transactional producers (TransactionalWriters).
 */
export class KafkaLog implements Log {
  readonly description: string;
  readonly retainsHistory = true;

  readonly #settings: KafkaLogSettings;
  readonly #bootstrap: Broker[];
  readonly #admin: Admin;
  readonly #producer: TopicProducer;
  readonly #batcher: AppendBatcher;
  readonly #writers: TransactionalWriters;
  /** Answers endOffsets() and startOffsets(); each read() has a consumer of its own. */
  readonly #offsetsConsumer: Kvs2Consumer;
  /** Aborted by close(): ends every read. */
  readonly #closing = new AbortController();
  /** Settles once open() first succeeds, or close() is called: appends made before wait for it. */
  readonly #opened = Promise.withResolvers<void>();
  #topicId: string | undefined;
  #lastLayout: TopicLayout | undefined;
  #tombstoneRetentionMs: number | null = null;
  #closed: Promise<void> | undefined;

  constructor(options: KafkaLogOptions) {
    this.#settings = resolveKafkaLogOptions(options);
    this.description = `Kafka topic ${this.#settings.topic} at ${this.#settings.brokers.join(',')}`;
    this.#bootstrap = parseBrokers(this.#settings.brokers);
    const target = this.#clientTarget();
    this.#admin = createAdmin(target);
    this.#producer = new TopicProducer(target, this.#settings.topic);
    this.#batcher = new AppendBatcher(this.#producer, {
      lingerMs: this.#settings.lingerMs,
      maxSendBytes: MAX_SEND_BYTES,
      description: this.description,
    });
    this.#offsetsConsumer = createConsumer(target, 'offsets', this.#settings.fetchMaxWaitMs);
    this.#writers = new TransactionalWriters({
      target,
      topic: this.#settings.topic,
      idPrefix: this.#settings.transactionalIdPrefix,
      size: this.#settings.transactionalPoolSize,
      description: this.description,
      logger: this.#settings.logger,
      metrics: this.#settings.metrics,
    });
    this.#opened.promise.catch(() => {});
  }

  #clientTarget(): ClientTarget {
    const { clientId, brokers, metrics, security } = this.#settings;
    return { clientId, brokers, metrics, security };
  }

  get tombstoneRetentionMs(): number | null {
    return this.#tombstoneRetentionMs;
  }

  /** Produce requests made so far; far fewer than appends under concurrent load, thanks to batching. */
  get produceRequests(): number {
    return this.#batcher.sendCount;
  }

  async open(signal?: AbortSignal): Promise<string> {
    if (this.#closing.signal.aborted) throw new Kvs2Error('SHUTTING_DOWN', `${this.description} is closed`);
    try {
      return await raceAbort(this.#open(signal), signal, `opening ${this.description}`);
    } catch (error) {
      if (error instanceof Kvs2Error) throw error;
      // Brokers that are down or electing leaders are worth waiting for; a refusal that no retry changes
      // (authorization, topic settings the cluster rejects, a broker too old) is not.
      const code = isPermanentKafkaError(error) ? 'LOG_MISCONFIGURED' : 'LOG_UNAVAILABLE';
      throw new Kvs2Error(code, `cannot open ${this.description}: ${describeKafkaError(error)}`, { cause: error });
    }
  }

  /**
   * Adopts the topic as it is now, after a read failed with LOG_RECREATED (or LOG_POSITION_LOST): the
   * same steps as open(), creating the topic again if it is gone. Reads and offsets from then on are
   * those of the new topic; appends go to it already (the producer follows the topic by name).
   */
  async reopen(signal?: AbortSignal): Promise<string> {
    this.#openTopicId();
    return this.open(signal);
  }

  /** The identity of the topic as it is now, without adopting it; LOG_UNAVAILABLE if it does not exist. */
  async currentIdentity(signal?: AbortSignal): Promise<string> {
    this.#openTopicId();
    let layout: TopicLayout | null;
    try {
      layout = await raceAbort(this.#describeTopic(), signal, `reading the identity of ${this.description}`);
    } catch (error) {
      if (error instanceof Kvs2Error) throw error;
      throw this.#unavailable('cannot read the topic metadata', error);
    }
    if (layout === null) {
      throw new Kvs2Error('LOG_UNAVAILABLE', `${this.description}: the topic does not exist (was it deleted?)`);
    }
    return identityOf(layout.topicId);
  }

  append(key: Buffer, value: Buffer | null, signal: AbortSignal): Promise<LogPosition> {
    if (this.#topicId === undefined) return this.#afterOpen(signal, () => this.append(key, value, signal));
    return this.#batcher.append({ key, value, partition: this.partitionOf(key) }, signal);
  }
  partitionOf(key: Buffer): number {
    return partitionForKey(key, this.#producer.partitionCount, this.#settings.hashTags);
  }

  /** The transactional ids this log's conditional writes use (`<transactionalIdPrefix>-<i>`). */
  get transactionalIds(): string[] {
    return this.#writers.ids;
  }

  /**
   * The records in one transaction of their own, produced in one request (acks=all); resolves with the
   * batch's base offset once the brokers acknowledged it. Readers of the partition (read_committed) stop at
   * that offset until commit() or abort(); commit() resolves once the transaction coordinator has the
   * verdict (the records become readable a few ms later, once its markers are written).
   */
  appendTentative(records: readonly LogWrite[], signal: AbortSignal): Promise<TentativeAppend> {
    if (this.#closing.signal.aborted) {
      return Promise.reject(new Kvs2Error('SHUTTING_DOWN', `${this.description} is closing`));
    }
    if (signal.aborted) return Promise.reject(abortError(signal, `writing to ${this.description}`));
    if (this.#topicId === undefined) return this.#afterOpen(signal, () => this.appendTentative(records, signal));
    const first = records[0];
    if (first === undefined) {
      return Promise.reject(new Kvs2Error('INVALID_ARGUMENT', 'a conditional write needs at least one record'));
    }
    const partition = this.partitionOf(first.key);
    let bytes = BATCH_HEADER_BYTES;
    for (const { key, value } of records) {
      if (this.partitionOf(key) !== partition) {
        return Promise.reject(
          new Kvs2Error('INVALID_ARGUMENT', 'the records of a conditional write must all go to one partition'),
        );
      }
      bytes += key.length + (value?.length ?? 0) + BATCHED_RECORD_FRAMING_BYTES;
    }
    // One batch: the topic's max.message.bytes bounds it whole.
    if (records.length > 1 && bytes > this.#producer.maxPartitionBytes) {
      return Promise.reject(
        new Kvs2Error(
          'INVALID_ARGUMENT',
          `a conditional write of ${records.length} records takes about ${bytes} bytes, more than the ${this.#producer.maxPartitionBytes} one batch may hold (max.message.bytes)`,
        ),
      );
    }
    return this.#writers.append(partition, records, signal);
  }

  endOffsets(signal: AbortSignal): Promise<Offsets> {
    if (this.#topicId === undefined) return this.#afterOpen(signal, () => this.endOffsets(signal));
    return this.#listOffsets(-1n, 'end', signal);
  }

  startOffsets(signal?: AbortSignal): Promise<Offsets> {
    return this.#listOffsets(-2n, 'start', signal);
  }

  async *read(from: Offsets, signal: AbortSignal): AsyncGenerator<LogBatch> {
    const topicId = this.#openTopicId();
    const settings = this.#settings;
    const reader = new TopicReader({
      topic: settings.topic,
      topicId,
      description: this.description,
      consumer: createConsumer(this.#clientTarget(), 'reader', settings.fetchMaxWaitMs),
      describeTopic: () => this.#describeTopic(),
      maxWaitMs: settings.fetchMaxWaitMs,
      flowingWaitMs: settings.fetchFlowingWaitMs,
      flowingMinBytes: FLOWING_FETCH_MIN_BYTES,
      // Fetch little and buffer little ahead, since parsed records take ~10 times their bytes on the heap and
      // those that wait get promoted by the GC; store all that is buffered at once, since fewer LMDB
      // transactions write the pages their keys share once (docs/benchmarks.md, "Why these constants").
      fetchMaxBytes: Math.max(4 * 1024 * 1024, this.#recordLimitBytes()),
      partitionMaxBytes: Math.max(1024 * 1024, this.#recordLimitBytes()),
      maxBufferedBytes: 8 * 1024 * 1024,
      maxBatchBytes: 8 * 1024 * 1024,
      metadataRefreshMs: settings.metadataRefreshMs,
      logger: settings.logger,
    });
    yield* reader.batches(from, AbortSignal.any([signal, this.#closing.signal]));
  }

  /** Kafka keeps what compaction keeps; nothing to release. */
  releaseBefore(): void {}

  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #open(signal: AbortSignal | undefined): Promise<string> {
    const settings = this.#settings;
    let layout = await this.#describeTopic();
    if (layout === null) {
      await createTopicIfMissing(
        this.#admin,
        {
          topic: settings.topic,
          partitions: settings.partitions,
          replicationFactor: settings.replicationFactor,
          maxMessageBytes: this.#recordLimitBytes(),
        },
        settings.logger,
      );
      layout = await this.#waitForLeaders(signal);
    }
    const topic = settings.topic;
    const topicSettings = await readTopicSettings(this.#admin, topic);
    this.#checkSettings(topicSettings);
    this.#tombstoneRetentionMs = topicSettings.deleteRetentionMs;
    this.#producer.adopt(layout.partitions.length, topicSettings.maxMessageBytes);
    // Takes this node's transactional ids over, aborting what its previous run left open (once per log).
    if (settings.fenceAtOpen) await this.#writers.fence();
    this.#topicId = layout.topicId;
    this.#opened.resolve();
    return identityOf(layout.topicId);
  }

  /** A node listens before its log is open: calls made meanwhile wait for the open, within their signal. */
  async #afterOpen<T>(signal: AbortSignal, then: () => Promise<T>): Promise<T> {
    await raceAbort(this.#opened.promise, signal, `waiting for ${this.description} to open`);
    return then();
  }

  /** A topic just created (by us or a node racing us) has no metadata or leaders for a moment. */
  async #waitForLeaders(signal: AbortSignal | undefined): Promise<TopicLayout> {
    const deadline = Date.now() + NEW_TOPIC_READY_TIMEOUT_MS;
    const stop = signal ?? this.#closing.signal;
    for (;;) {
      const layout = await this.#describeTopic();
      if (layout !== null && layout.partitions.length > 0 && layout.partitions.every((p) => p.leader >= 0)) {
        return layout;
      }
      if (Date.now() > deadline || stop.aborted) {
        throw new Kvs2Error('LOG_UNAVAILABLE', `${this.description}: the new topic has no leaders after 30 s`);
      }
      await pause(100, stop);
    }
  }

  #checkSettings(topic: TopicSettings): void {
    const logger = this.#settings.logger;
    const context = { topic: this.#settings.topic, ...topic };
    if (!keepsEveryKey(topic)) {
      logger?.warn(
        context,
        `${this.description} has cleanup.policy=${topic.cleanupPolicy}, not compact: Kafka will delete old ` +
          'records, and nodes rebuilding their store from the topic will miss keys. Set cleanup.policy=compact.',
      );
    }
    if (topic.maxMessageBytes < this.#recordLimitBytes()) {
      logger?.warn(
        context,
        `${this.description} has max.message.bytes=${topic.maxMessageBytes}, below the ${this.#recordLimitBytes()} ` +
          'bytes the largest accepted key and value need: Kafka will refuse such writes.',
      );
    }
  }

  async #listOffsets(timestamp: bigint, which: string, signal: AbortSignal | undefined): Promise<Offsets> {
    const topicId = this.#openTopicId();
    const topic = this.#settings.topic;
    let listed: Map<string, bigint[]>;
    try {
      listed = await raceAbort(
        this.#offsetsConsumer.listOffsets({
          topics: [topic],
          timestamp,
          isolationLevel: FetchIsolationLevels.READ_COMMITTED,
        }),
        signal,
        `reading the ${which} offsets of ${this.description}`,
      );
    } catch (error) {
      if (error instanceof Kvs2Error) throw error;
      throw this.#unavailable(`cannot read the ${which} offsets`, error);
    }
    // ListOffsets names topics, not ids: make sure the offsets are those of the topic we opened.
    const listedId = this.#offsetsConsumer.currentMetadata?.topics.get(topic)?.id;
    if (listedId !== undefined && listedId !== topicId) {
      throw new Kvs2Error(
        'LOG_RECREATED',
        `${this.description}: the topic was recreated (id ${topicId} is now ${listedId})`,
      );
    }
    const offsets = new Map<number, number>();
    (listed.get(topic) ?? []).forEach((offset, partition) => {
      offsets.set(partition, offsetToNumber(offset, `${which} offset of partition ${partition}`));
    });
    return offsets;
  }

  async #describeTopic(): Promise<TopicLayout | null> {
    const layout = await fetchTopicLayout(
      this.#admin,
      metadataCandidates(this.#lastLayout, this.#bootstrap),
      this.#settings.topic,
    );
    if (layout !== null) this.#lastLayout = layout;
    return layout;
  }

  /** The largest single-record batch kvs2 may send: what max.message.bytes must allow. */
  #recordLimitBytes(): number {
    return this.#settings.maxKeyBytes + this.#settings.maxValueBytes + RECORD_FRAMING_BYTES;
  }

  #openTopicId(): string {
    if (this.#topicId === undefined) throw new Kvs2Error('LOG_UNAVAILABLE', `${this.description} is not open`);
    return this.#topicId;
  }

  #unavailable(what: string, error: unknown): Kvs2Error {
    return new Kvs2Error('LOG_UNAVAILABLE', `${this.description}: ${what}: ${describeKafkaError(error)}`, {
      cause: error,
    });
  }

  async #close(): Promise<void> {
    const closing = new Kvs2Error('SHUTTING_DOWN', `${this.description} is closing`);
    this.#closing.abort(closing);
    this.#opened.reject(closing);
    await this.#batcher.close();
    await this.#writers.close();
    const results = await Promise.allSettled([
      this.#producer.close(),
      this.#offsetsConsumer.close(),
      this.#admin.close(),
    ]);
    for (const result of results) {
      if (result.status === 'rejected') {
        this.#settings.logger?.warn(
          { err: result.reason },
          `${this.description}: closing a client failed: ${describeError(result.reason)}`,
        );
      }
    }
  }
}

function identityOf(topicId: string): string {
  return `kafka:${topicId}`;
}
