import type { Admin, Broker } from '@platformatic/kafka';
import { FetchIsolationLevels } from '@platformatic/kafka';
import { raceAbort } from '../../abort.js';
import { describeError, Kvs2Error } from '../../errors.js';
import type { Log, LogBatch, LogPosition, Offsets } from '../log.js';
import { pause } from './abortable.js';
import { AppendBatcher, type OutgoingRecord } from './append-batcher.js';
import { createAdmin, createConsumer, createProducer, type Kvs2Consumer, type Kvs2Producer } from './kafka-clients.js';
import { describeKafkaError } from './kafka-errors.js';
import { type KafkaLogOptions, type KafkaLogSettings, resolveKafkaLogOptions } from './kafka-log-options.js';
import { offsetToNumber } from './kafka-offsets.js';
import { partitionForKey } from './murmur2-partitioner.js';
import { createTopicIfMissing, keepsEveryKey, readTopicSettings, type TopicSettings } from './topic-admin.js';
import { fetchTopicLayout, metadataCandidates, parseBrokers, type TopicLayout } from './topic-metadata.js';
import { TopicReader } from './topic-reader.js';

/** Room for the record batch header and one record's framing around its key and value. */
const RECORD_FRAMING_BYTES = 1024;
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
 */
export class KafkaLog implements Log {
  readonly description: string;
  readonly retainsHistory = true;

  readonly #settings: KafkaLogSettings;
  readonly #bootstrap: Broker[];
  readonly #admin: Admin;
  readonly #producer: Kvs2Producer;
  /** Answers endOffsets() and startOffsets(); each read() has a consumer of its own. */
  readonly #offsetsConsumer: Kvs2Consumer;
  /** Aborted by close(): ends every read. */
  readonly #closing = new AbortController();
  #batcher: AppendBatcher | undefined;
  #topicId: string | undefined;
  #lastLayout: TopicLayout | undefined;
  #partitionCount = 0;
  /** The topic's max.message.bytes: the most one partition's batch in a produce request may hold. */
  #maxMessageBytes = 0;
  #tombstoneRetentionMs: number | null = null;
  #closed: Promise<void> | undefined;

  constructor(options: KafkaLogOptions) {
    this.#settings = resolveKafkaLogOptions(options);
    this.description = `Kafka topic ${this.#settings.topic} at ${this.#settings.brokers.join(',')}`;
    this.#bootstrap = parseBrokers(this.#settings.brokers);
    const target = { clientId: this.#settings.clientId, brokers: this.#settings.brokers };
    this.#admin = createAdmin(target);
    this.#producer = createProducer(target);
    this.#offsetsConsumer = createConsumer(target, 'offsets', this.#settings.fetchMaxWaitMs);
  }

  get tombstoneRetentionMs(): number | null {
    return this.#tombstoneRetentionMs;
  }

  /** Produce calls made so far; far fewer than appends under concurrent load, thanks to batching. */
  get produceRequests(): number {
    return this.#batcher?.sendCount ?? 0;
  }

  async open(signal?: AbortSignal): Promise<string> {
    if (this.#closing.signal.aborted) throw new Kvs2Error('SHUTTING_DOWN', `${this.description} is closed`);
    try {
      return await raceAbort(this.#open(signal), signal, `opening ${this.description}`);
    } catch (error) {
      if (error instanceof Kvs2Error) throw error;
      throw new Kvs2Error('LOG_UNAVAILABLE', `cannot open ${this.description}: ${describeKafkaError(error)}`, {
        cause: error,
      });
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

  append(key: Buffer, value: Buffer | null, signal?: AbortSignal): Promise<LogPosition> {
    const batcher = this.#batcher;
    if (batcher === undefined) {
      return Promise.reject(new Kvs2Error('LOG_UNAVAILABLE', `${this.description} is not open`));
    }
    const { maxKeyBytes, maxValueBytes } = this.#settings;
    if (key.length === 0 || key.length > maxKeyBytes) {
      return Promise.reject(
        new Kvs2Error('INVALID_ARGUMENT', `key of ${key.length} bytes: keys take 1 to ${maxKeyBytes} bytes`),
      );
    }
    if (value !== null && value.length > maxValueBytes) {
      return Promise.reject(
        new Kvs2Error('INVALID_ARGUMENT', `value of ${value.length} bytes: values take at most ${maxValueBytes} bytes`),
      );
    }
    return batcher.append({ key, value, partition: partitionForKey(key, this.#partitionCount) }, signal);
  }

  endOffsets(signal?: AbortSignal): Promise<Offsets> {
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
      consumer: createConsumer(
        { clientId: settings.clientId, brokers: settings.brokers },
        'reader',
        settings.fetchMaxWaitMs,
      ),
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
    this.#maxMessageBytes = topicSettings.maxMessageBytes;
    this.#partitionCount = layout.partitions.length;
    this.#topicId = layout.topicId;
    this.#batcher ??= new AppendBatcher({
      send: (records) => this.#send(records),
      lingerMs: settings.lingerMs,
      maxSendBytes: MAX_SEND_BYTES,
      maxPartitionBytes: () => this.#maxMessageBytes,
      leaderOf: (partition) => this.#producer.currentMetadata?.topics.get(topic)?.partitions[partition]?.leader ?? -1,
      timeoutMs: settings.appendTimeoutMs,
      description: this.description,
    });
    return identityOf(layout.topicId);
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

  async #send(records: readonly OutgoingRecord[]): Promise<LogPosition[]> {
    const topic = this.#settings.topic;
    const result = await this.#producer.send({
      messages: records.map(({ key, value, partition }) => ({ topic, key, value, partition })),
    });
    const baseOffsets = new Map<number, bigint>();
    for (const { topic: name, partition, offset } of result.offsets ?? []) {
      if (name === topic) baseOffsets.set(partition, offset);
    }
    // A produce request holds one batch per partition, in the order given: the n-th record of a
    // partition lands at the batch's base offset + n.
    const taken = new Map<number, number>();
    const positions = records.map(({ partition }) => {
      const base = baseOffsets.get(partition);
      if (base === undefined) throw new Error(`no offset acknowledged for partition ${partition}`);
      const index = taken.get(partition) ?? 0;
      taken.set(partition, index + 1);
      return { partition, offset: offsetToNumber(base + BigInt(index), `partition ${partition}`) };
    });
    // Partitions added to the topic take keys from now on, as with Java producers.
    const known = this.#producer.currentMetadata?.topics.get(topic)?.partitionsCount ?? 0;
    if (known > this.#partitionCount) this.#partitionCount = known;
    return positions;
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
    this.#closing.abort(new Kvs2Error('SHUTTING_DOWN', `${this.description} is closing`));
    await this.#batcher?.close();
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
