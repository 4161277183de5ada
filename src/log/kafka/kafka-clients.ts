import { randomUUID } from 'node:crypto';
import type { ConnectionOptions } from 'node:tls';
import { Admin, type BaseOptions, Consumer, FetchIsolationLevels, ProduceAcks, Producer } from '@platformatic/kafka';
import { hasBrokerError } from './kafka-errors.js';

/**
 * How kvs2 builds its Kafka clients, and why each timeout and retry count is what it is.
 *
 * The library's defaults to keep in mind (2.12): `retries` 3 with `retryDelay` 1000 ms between attempts,
 * `timeout` 5000 ms (sent to the broker: how long it may wait for replicas to acknowledge a produce),
 * `requestTimeout` 30 s and `connectTimeout` 5 s per connection, and metadata cached for 5 s. An
 * idempotent producer forces acks=all and one request in flight per connection, and turns `retries`
 * that are unset or 0 or 1 into Number.MAX_SAFE_INTEGER: a producer that retries forever.
 */

export type Kvs2Producer = Producer<Buffer, Buffer | null, Buffer, Buffer>;
export type Kvs2Consumer = Consumer<Buffer, Buffer | null, Buffer, Buffer>;
export type Kvs2Transaction = Awaited<ReturnType<Kvs2Producer['beginTransaction']>>;

/** Where the client library reports its own metrics: a prom-client registry and prom-client itself. */
export type KafkaClientMetrics = NonNullable<BaseOptions['metrics']>;

/**
 * TLS and SASL for every connection to the brokers, in the library's own terms: Node's tls options (the
 * library calls tls.connect with them, verifying the broker's certificate and host name as Node does) and
 * its SASL options (PLAIN and SCRAM run by the library; a password function is called for each new
 * connection, so a rotated password is picked up by the next one).
 */
export interface KafkaConnectionSecurity {
  readonly tls?: ConnectionOptions | undefined;
  readonly sasl?: KafkaSaslOptions | undefined;
}

export interface KafkaSaslOptions {
  readonly mechanism: 'PLAIN' | 'SCRAM-SHA-256' | 'SCRAM-SHA-512';
  readonly username: string;
  readonly password: () => Promise<string>;
}

export interface ClientTarget {
  readonly clientId: string;
  readonly brokers: readonly string[];
  /** Absent: the clients keep no metrics. */
  readonly metrics?: KafkaClientMetrics | undefined;
  /** Absent: plaintext, no authentication. */
  readonly security?: KafkaConnectionSecurity | undefined;
}

/** The options every client shares: metrics when the node keeps them, TLS and SASL when configured. */
function commonOf(target: ClientTarget): Pick<BaseOptions, 'metrics' | 'tls' | 'sasl'> {
  const { metrics, security } = target;
  const sasl = security?.sasl;
  return {
    ...(metrics === undefined ? {} : { metrics }),
    ...(security?.tls === undefined ? {} : { tls: { ...security.tls } }),
    ...(sasl === undefined
      ? {}
      : { sasl: { mechanism: sasl.mechanism, username: sasl.username, password: sasl.password } }),
  };
}

/** A dead broker refuses connections at once; a black-holed one must not stall a call for long. */
const CONNECT_TIMEOUT_MS = 3_000;

const PRODUCER_METADATA_MAX_AGE_MS = 1_000;
/**
 * The broker waits at most this for in-sync replicas before answering REQUEST_TIMED_OUT: as long as the
 * default request timeout (5 s), since no caller waits longer by default.
 */
const PRODUCE_ACK_TIMEOUT_MS = 5_000;
/**
 * Above the broker's own wait: a request with no answer by then is lost (the broker hangs or is cut
 * off). It bounds how long a partition's next appends wait behind a request already sent.
 */
const PRODUCE_REQUEST_TIMEOUT_MS = PRODUCE_ACK_TIMEOUT_MS + 2_000;

/**
 * The producer tries each request once (`retries: false`; a number of 0 or 1 would mean "forever" for
 * an idempotent producer) and never repeats a request by itself on stale metadata: the AppendBatcher
 * retries, after a pause and only with the records whose callers still wait, so that nothing is sent
 * after its caller was told it failed. A failed request makes the library start a new producer id, so a
 * record whose failed request did reach the broker may be written twice; both copies sit next to each
 * other in the partition, since the partition's next records wait for the retry.
 */
export function createProducer(target: ClientTarget): Kvs2Producer {
  return new Producer<Buffer, Buffer | null, Buffer, Buffer>({
    clientId: target.clientId,
    bootstrapBrokers: [...target.brokers],
    idempotent: true,
    acks: ProduceAcks.ALL,
    retries: false,
    repeatOnStaleMetadata: false,
    timeout: PRODUCE_ACK_TIMEOUT_MS,
    requestTimeout: PRODUCE_REQUEST_TIMEOUT_MS,
    // Leaders move when a broker fails: with a 1 s cache (and a refresh after every failed request),
    // retries follow a leader that moved within about a second. One metadata request a second at most.
    metadataMaxAge: PRODUCER_METADATA_MAX_AGE_MS,
    connectTimeout: CONNECT_TIMEOUT_MS,
    autocreateTopics: false,
    ...commonOf(target),
  });
}

/**
 * The transaction timeout of conditional writes: the coordinator aborts a transaction still open this long
 * after its first AddPartitionsToTxn. It bounds how long a writer that died mid-transaction stalls its
 * partition's readers (this + the broker's transaction.abort.timed.out.transaction.cleanup.interval.ms), and
 * a conditional write must reach its verdict within it (a CAS cycle takes a few ms; waiting behind another
 * writer's open transaction can take up to this). The library has no option of its own for it: it sends its
 * `timeout` (also the produce acknowledgement timeout) as the transaction timeout, so the two are one value,
 * the plain producer's 5 s (docs/cas-on-kafka.md, claim 5).
 */
export const TRANSACTION_TIMEOUT_MS = PRODUCE_ACK_TIMEOUT_MS;

/** Retries of each transactional request: enough to ride out a coordinator busy for a second or two. */
const TRANSACTION_RETRIES = 50;
/** Between retries of anything else than CONCURRENT_TRANSACTIONS (a coordinator moving, a broker down). */
const TRANSACTION_RETRY_MS = 250;

/**
 * The coordinator answers CONCURRENT_TRANSACTIONS while it completes the id's previous transaction (its
 * markers, a few ms after a commit answered) or aborts the one a restarted node left open (~100-200 ms):
 * retry at once, then less eagerly (5, 10, ... 50 ms); the library's default 1 s would cost every
 * conditional write that reuses an id right after its commit a second.
 */
function transactionRetryDelay(
  _client: unknown,
  _operation: string,
  attempt: number,
  _retries: number,
  error: Error,
): number {
  return hasBrokerError(error, 'CONCURRENT_TRANSACTIONS') ? Math.min(5 * attempt, 50) : TRANSACTION_RETRY_MS;
}

/**
 * A producer for one transactional id (conditional writes, docs/cas-on-kafka.md). Unlike the plain producer
 * it retries by itself: every request of a transaction is safe to repeat (a produce keeps its sequence
 * numbers, a repeated EndTxn is answered like the first), and the pool cuts a producer short by closing it.
 */
export function createTransactionalProducer(target: ClientTarget, transactionalId: string): Kvs2Producer {
  return new Producer<Buffer, Buffer | null, Buffer, Buffer>({
    clientId: target.clientId,
    bootstrapBrokers: [...target.brokers],
    idempotent: true,
    transactionalId,
    acks: ProduceAcks.ALL,
    retries: TRANSACTION_RETRIES,
    retryDelay: transactionRetryDelay,
    timeout: TRANSACTION_TIMEOUT_MS,
    requestTimeout: PRODUCE_REQUEST_TIMEOUT_MS,
    metadataMaxAge: PRODUCER_METADATA_MAX_AGE_MS,
    connectTimeout: CONNECT_TIMEOUT_MS,
    autocreateTopics: false,
    ...commonOf(target),
  });
}

/**
 * A consumer used only for Fetch and ListOffsets, never for a group: its group id is unique and never
 * joins, so the broker keeps no group for it. Retries are few and short: readers retry on their own
 * schedule, and endOffsets() callers want an answer or an error quickly.
 */
export function createConsumer(target: ClientTarget, role: string, fetchMaxWaitMs: number): Kvs2Consumer {
  return new Consumer<Buffer, Buffer | null, Buffer, Buffer>({
    clientId: `${target.clientId}-${role}`,
    bootstrapBrokers: [...target.brokers],
    groupId: `${target.clientId}-${role}-${randomUUID()}`,
    autocommit: false,
    isolationLevel: FetchIsolationLevels.READ_COMMITTED,
    retries: 2,
    retryDelay: 250,
    // A fetch legitimately waits fetchMaxWaitMs at the broker before answering.
    requestTimeout: fetchMaxWaitMs + 10_000,
    connectTimeout: CONNECT_TIMEOUT_MS,
    autocreateTopics: false,
    ...commonOf(target),
  });
}

export function createAdmin(target: ClientTarget): Admin {
  return new Admin({
    clientId: `${target.clientId}-admin`,
    bootstrapBrokers: [...target.brokers],
    retries: 3,
    retryDelay: 250,
    requestTimeout: 15_000,
    connectTimeout: CONNECT_TIMEOUT_MS,
    autocreateTopics: false,
    ...commonOf(target),
  });
}
