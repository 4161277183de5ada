import { type Consumer, FetchIsolationLevels, type fetchV17 } from '@platformatic/kafka';
import { backoffMs, pause } from '../../abort.js';
import { Kvs2Error } from '../../errors.js';
import type { Offsets } from '../../offsets.js';
import type { LogBatch } from '../log.js';
import { FetchedChunks } from './fetched-chunks.js';
import { describeKafkaError, hasBrokerError, isClientClosed, TOPIC_GONE_ERRORS } from './kafka-errors.js';
import type { KafkaLogLogger } from './kafka-log-options.js';
import { decodePartition } from './record-batches.js';
import type { TopicLayout } from './topic-metadata.js';

/** What a reader needs from the log that owns it. */
export interface TopicReaderOptions {
  readonly topic: string;
  /** The topic id the log was opened with: any other id means the topic was recreated. */
  readonly topicId: string;
  readonly description: string;
  /** A consumer of this reader's own: fetch sessions are per client and node, so readers must not share. */
  readonly consumer: Consumer<Buffer, Buffer | null, Buffer, Buffer>;
  /** Fresh metadata for the topic; null when it does not exist. */
  readonly describeTopic: () => Promise<TopicLayout | null>;
  /** How long a fetch waits at the broker for data: the latency of an idle reader. */
  readonly maxWaitMs: number;
  /**
   * While records flow (the last fetch brought some), how long the next fetch may wait at the broker for
   * `flowingMinBytes` to gather, so that a steady stream arrives in fewer, larger fetches. 0 turns it off.
   */
  readonly flowingWaitMs: number;
  readonly flowingMinBytes: number;
  /** Most bytes one fetch brings back (at least one whole batch comes back whatever this says). */
  readonly fetchMaxBytes: number;
  readonly partitionMaxBytes: number;
  /** Fetched bytes waiting for the caller above which fetching pauses. */
  readonly maxBufferedBytes: number;
  /** Most record bytes one batch hands over (a single fetched chunk may be larger). */
  readonly maxBatchBytes: number;
  /** How often metadata is read again to see new partitions and leaders. */
  readonly metadataRefreshMs: number;
  readonly logger: KafkaLogLogger | undefined;
}

const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 2_000;
/** Leaderless partitions (an election, a broker down) are looked at again this often. */
const LEADERLESS_REFRESH_MS = 1_000;
/** Metadata refreshes asked for by errors are at most this frequent. */
const MIN_REFRESH_INTERVAL_MS = 250;
/** A position beyond the log's end this many times in a row is lost, not a lagging new leader. */
const BEYOND_END_STRIKES = 3;
const WARN_INTERVAL_MS = 10_000;

/** Broker answers that no retry will change: the reader gives up with LOG_UNAVAILABLE. */
const REFUSALS = [
  'TOPIC_AUTHORIZATION_FAILED',
  'CLUSTER_AUTHORIZATION_FAILED',
  'SASL_AUTHENTICATION_FAILED',
  'UNSUPPORTED_VERSION',
  'UNSUPPORTED_COMPRESSION_TYPE',
  'INVALID_REQUEST',
];

/**
 * Reads every partition of the topic, from given offsets, without any consumer group: one fetch loop
 * per broker that leads some of our partitions, each sending Fetch requests for exactly those
 * partitions. Why not `consume()` in a group of its own: a group needs a coordinator, heartbeats and
 * (after a crash) waits out the old member's session, while kvs2 needs none of it since it keeps its
 * offsets in the store; and a stream hides the batch boundaries, so a partition holding only
 * transaction markers would never report that it advanced.
 *
 * Leaders move: metadata is read again when a fetch fails, while partitions lack a leader, and every
 * `metadataRefreshMs` (which also finds added partitions). Broker outages are retried with backoff
 * for as long as it takes; only a recreated topic (LOG_RECREATED), a position retention removed
 * (LOG_POSITION_LOST) or a refusal (LOG_UNAVAILABLE) end the read with an error.
 */
export class TopicReader {
  readonly #options: TopicReaderOptions;
  readonly #stop = new AbortController();
  /** Next offset to fetch, per partition. Moves when a response is accepted, before the caller sees it. */
  readonly #positions = new Map<number, bigint>();
  readonly #loops = new Set<number>();
  readonly #beyondEndStrikes = new Map<number, number>();
  #layout: TopicLayout | undefined;
  readonly #fetched: FetchedChunks;
  #failure: Kvs2Error | undefined;
  #refreshing: Promise<void> | undefined;
  #refreshTimer: NodeJS.Timeout | undefined;
  #lastRefreshAt = 0;
  #lastWarnAt = 0;

  constructor(options: TopicReaderOptions) {
    this.#options = options;
    this.#fetched = new FetchedChunks(options.maxBufferedBytes, options.maxBatchBytes);
  }

  async *batches(from: Offsets, signal: AbortSignal): AsyncGenerator<LogBatch> {
    const stop = this.#stop.signal;
    const onAbort = (): void => this.#halt();
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) this.#halt();
    let periodic: NodeJS.Timeout | undefined;
    try {
      await this.#start(from);
      // Only once started: a refresh adopts new partitions from their start, which must not pre-empt
      // the positions `from` gives.
      periodic = setInterval(() => this.#requestRefresh(), this.#options.metadataRefreshMs);
      while (!stop.aborted) {
        if (this.#fetched.isEmpty) {
          await this.#fetched.whenAdded();
          continue;
        }
        yield this.#fetched.take();
      }
      if (this.#failure !== undefined) throw this.#failure;
    } finally {
      clearInterval(periodic);
      signal.removeEventListener('abort', onAbort);
      this.#halt();
      await this.#options.consumer.close().catch(() => {});
    }
  }

  /** Reads the topic's layout and the start offsets of partitions `from` does not name. */
  async #start(from: Offsets): Promise<void> {
    const stop = this.#stop.signal;
    for (let attempt = 0; !stop.aborted && this.#layout === undefined; attempt++) {
      try {
        await this.#adoptLayout(await this.#options.describeTopic(), from);
      } catch (error) {
        if (error instanceof Kvs2Error) throw error;
        this.#warn(error, 'cannot read the topic metadata yet, retrying');
        await pause(backoffMs(attempt, RETRY_MIN_MS, RETRY_MAX_MS), stop);
      }
    }
  }

  /** Checks the topic is still ours, takes its leaders, and starts positions of new partitions. */
  async #adoptLayout(layout: TopicLayout | null, from: Offsets): Promise<void> {
    if (layout === null || layout.topicId !== this.#options.topicId) {
      throw new Kvs2Error(
        'LOG_RECREATED',
        layout === null
          ? `${this.#options.description}: the topic was deleted`
          : `${this.#options.description}: the topic was recreated (id ${this.#options.topicId} is now ${layout.topicId})`,
      );
    }
    const unknown = layout.partitions.map((p) => p.partition).filter((p) => !this.#positions.has(p));
    const starts = new Map<number, bigint>();
    const needStart = unknown.filter((p) => from.get(p) === undefined);
    if (needStart.length > 0) {
      const earliest = await this.#listOffsets(needStart, -2n);
      for (const p of needStart) starts.set(p, earliest.get(p) ?? 0n);
    }
    if (this.#stop.signal.aborted) return;
    for (const p of unknown) this.#positions.set(p, starts.get(p) ?? BigInt(from.get(p) ?? 0));
    this.#layout = layout;
    this.#lastRefreshAt = Date.now();
    this.#startFetchers();
  }

  #startFetchers(): void {
    const layout = this.#layout;
    if (layout === undefined || this.#stop.signal.aborted) return;
    let leaderless = false;
    for (const { leader } of layout.partitions) {
      if (leader < 0) leaderless = true;
      else if (!this.#loops.has(leader)) {
        this.#loops.add(leader);
        void this.#fetchLoop(leader);
      }
    }
    if (leaderless) this.#requestRefresh(LEADERLESS_REFRESH_MS);
  }

  async #fetchLoop(node: number): Promise<void> {
    const stop = this.#stop.signal;
    let attempt = 0;
    // Each fetch round costs the broker and this node CPU and one store commit (docs/benchmarks.md, "Why
    // these constants"): with records flowing, a fetch that waits a few ms for more saves many rounds. An
    // idle reader long-polls and answers the first record at once, so an isolated write is not delayed.
    let flowing = false;
    while (!stop.aborted) {
      const partitions = this.#layout?.partitions.filter((p) => p.leader === node) ?? [];
      if (partitions.length === 0) break;
      await this.#fetched.whenRoom();
      if (stop.aborted) break;
      const requested = new Map<number, bigint>();
      for (const { partition } of partitions) requested.set(partition, this.#positions.get(partition) ?? 0n);
      try {
        const response: fetchV17.FetchResponse = await this.#options.consumer.fetch({
          node,
          topics: [
            {
              topicId: this.#options.topicId,
              partitions: partitions.map(({ partition, leaderEpoch }) => ({
                partition,
                fetchOffset: requested.get(partition) ?? 0n,
                // Lets a broker that is no longer leader say so (FENCED_LEADER_EPOCH) instead of serving.
                currentLeaderEpoch: leaderEpoch,
                lastFetchedEpoch: -1,
                partitionMaxBytes: this.#options.partitionMaxBytes,
              })),
            },
          ],
          maxWaitTime: flowing ? this.#options.flowingWaitMs : this.#options.maxWaitMs,
          minBytes: flowing ? this.#options.flowingMinBytes : 1,
          maxBytes: this.#options.fetchMaxBytes,
          isolationLevel: FetchIsolationLevels.READ_COMMITTED,
        });
        if (stop.aborted) break;
        attempt = 0;
        flowing = this.#accept(response, requested) && this.#options.flowingWaitMs > 0;
      } catch (error) {
        if (stop.aborted || isClientClosed(error)) break;
        await this.#recover(error, requested);
        await pause(backoffMs(attempt++, RETRY_MIN_MS, RETRY_MAX_MS), stop);
      }
    }
    this.#loops.delete(node);
  }

  /**
   * Queues what a fetch brought, for partitions whose position is still the one fetched from. True when it
   * brought records.
   */
  #accept(response: fetchV17.FetchResponse, requested: ReadonlyMap<number, bigint>): boolean {
    let brought = false;
    for (const topic of response.responses) {
      if (topic.topicId !== this.#options.topicId) continue;
      for (const data of topic.partitions) {
        const partition = data.partitionIndex;
        const fetchOffset = requested.get(partition);
        // Another loop took over this partition (its leader moved) and already went further.
        if (fetchOffset === undefined || this.#positions.get(partition) !== fetchOffset) continue;
        const chunk = decodePartition(partition, data, fetchOffset);
        if (chunk === null || chunk.nextOffset <= fetchOffset) continue;
        this.#positions.set(partition, chunk.nextOffset);
        this.#beyondEndStrikes.delete(partition);
        let bytes = 0;
        for (const record of chunk.records) bytes += (record.key?.length ?? 0) + (record.value?.length ?? 0);
        this.#fetched.add({ partition, records: chunk.records, nextOffset: chunk.nextOffset, bytes });
        brought = true;
      }
    }
    return brought;
  }

  /** Works out what a failed fetch means; fails the read only when retrying cannot help. */
  async #recover(error: unknown, requested: ReadonlyMap<number, bigint>): Promise<void> {
    try {
      if (hasBrokerError(error, 'OFFSET_OUT_OF_RANGE')) {
        await this.#checkPositions(requested);
      } else if (hasBrokerError(error, ...TOPIC_GONE_ERRORS)) {
        await this.#refresh();
      } else if (hasBrokerError(error, ...REFUSALS)) {
        this.#fail(
          new Kvs2Error('LOG_UNAVAILABLE', `${this.#options.description}: ${describeKafkaError(error)}`, {
            cause: error,
          }),
        );
      } else {
        // Broker down, leader moved, session expired...: look at the leaders again and retry.
        this.#warn(error, 'fetch failed, retrying');
        this.#requestRefresh();
      }
    } catch (checkError) {
      if (checkError instanceof Kvs2Error) this.#fail(checkError);
      else this.#warn(checkError, 'fetch failed and the brokers cannot say why yet, retrying');
    }
  }

  /**
   * After OFFSET_OUT_OF_RANGE: a position before the log's start was removed by retention (lost); one
   * past its end may be a new leader still catching up, so it is lost only if it stays so.
   */
  async #checkPositions(requested: ReadonlyMap<number, bigint>): Promise<void> {
    const partitions = [...requested.keys()];
    const [starts, ends] = await Promise.all([this.#listOffsets(partitions, -2n), this.#listOffsets(partitions, -1n)]);
    for (const [partition, position] of requested) {
      const start = starts.get(partition);
      const end = ends.get(partition);
      if (start !== undefined && position < start) {
        throw new Kvs2Error(
          'LOG_POSITION_LOST',
          `${this.#options.description}: partition ${partition} now starts at offset ${start}; ` +
            `offset ${position} and the records after it up to there were removed before this node read them`,
        );
      }
      if (end !== undefined && position > end) {
        const strikes = (this.#beyondEndStrikes.get(partition) ?? 0) + 1;
        this.#beyondEndStrikes.set(partition, strikes);
        if (strikes >= BEYOND_END_STRIKES) {
          throw new Kvs2Error(
            'LOG_POSITION_LOST',
            `${this.#options.description}: partition ${partition} ends at offset ${end}, before offset ${position} ` +
              'this node already read: records it applied are gone from the log',
          );
        }
      }
    }
  }

  async #listOffsets(partitions: number[], timestamp: bigint): Promise<Map<number, bigint>> {
    // ListOffsets goes by the client's cached metadata, which may not know a partition added or a
    // leader moved since (it is kept 5 s); these calls are rare, so read it afresh each time.
    await this.#options.consumer.metadata({ topics: [this.#options.topic], forceUpdate: true });
    const listed = await this.#options.consumer.listOffsets({
      topics: [this.#options.topic],
      partitions: { [this.#options.topic]: partitions },
      timestamp,
      isolationLevel: FetchIsolationLevels.READ_COMMITTED,
    });
    const offsets = new Map<number, bigint>();
    const byPartition = listed.get(this.#options.topic) ?? [];
    for (const partition of partitions) {
      const offset = byPartition[partition];
      if (offset !== undefined) offsets.set(partition, offset);
    }
    return offsets;
  }

  /** Reads metadata again now (one refresh at a time); throws LOG_RECREATED if the topic changed. */
  #refresh(): Promise<void> {
    this.#refreshing ??= (async () => {
      try {
        await this.#adoptLayout(await this.#options.describeTopic(), new Map());
      } finally {
        this.#refreshing = undefined;
      }
    })();
    return this.#refreshing;
  }

  /** Asks for a refresh soon, at most one per MIN_REFRESH_INTERVAL_MS, failing the read if the topic changed. */
  #requestRefresh(delayMs = 0): void {
    if (this.#refreshTimer !== undefined || this.#layout === undefined || this.#stop.signal.aborted) return;
    const wait = Math.max(delayMs, this.#lastRefreshAt + MIN_REFRESH_INTERVAL_MS - Date.now(), 0);
    this.#refreshTimer = setTimeout(() => {
      this.#refreshTimer = undefined;
      this.#lastRefreshAt = Date.now();
      this.#refresh().catch((error: unknown) => {
        if (error instanceof Kvs2Error) this.#fail(error);
        else this.#warn(error, 'cannot refresh the topic metadata, retrying');
        if (!this.#stop.signal.aborted) this.#startFetchers();
      });
    }, wait);
  }

  #fail(error: Kvs2Error): void {
    this.#failure ??= error;
    this.#halt();
  }

  /** Stops every loop and wakes whoever waits; idempotent. */
  #halt(): void {
    this.#stop.abort();
    clearTimeout(this.#refreshTimer);
    this.#refreshTimer = undefined;
    this.#fetched.wakeAll();
  }

  /** Transient trouble is logged at most every WARN_INTERVAL_MS: an outage must not flood the log. */
  #warn(error: unknown, message: string): void {
    const now = Date.now();
    if (now - this.#lastWarnAt < WARN_INTERVAL_MS) return;
    this.#lastWarnAt = now;
    this.#options.logger?.warn(
      { err: error, topic: this.#options.topic, reason: describeKafkaError(error) },
      `${this.#options.description}: ${message}`,
    );
  }
}
