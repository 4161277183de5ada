import type { Kvs2Error } from '../errors.js';
import type { Logger } from '../logger.js';

/**
 * The public surface of `kvs2/replica`, in types only: what an application sees of an in-process replica.
 * The implementation (kvs2-replica.ts) is loaded when a replica is opened.
 */

/** TLS and SASL to the brokers: a node's `--kafka-*` security settings, with the same defaults and checks. */
export interface ReplicaKafkaSecurity {
  /** Kafka's `security.protocol` (default: SASL_SSL with `sasl`, else SSL with a TLS file, else PLAINTEXT). */
  readonly protocol?: 'PLAINTEXT' | 'SSL' | 'SASL_PLAINTEXT' | 'SASL_SSL';
  /** PEM CA certificates the brokers' certificates must chain to (default: Node's bundled CAs). */
  readonly tlsCaFile?: string;
  /** This process's certificate chain and key, for brokers that require client certificates; both or neither. */
  readonly tlsCertFile?: string;
  readonly tlsKeyFile?: string;
  readonly sasl?: {
    readonly mechanism: 'PLAIN' | 'SCRAM-SHA-256' | 'SCRAM-SHA-512';
    readonly username: string;
    /** A file holding the password, re-read for every new connection (rotation without a restart)... */
    readonly passwordFile?: string;
    /** ...or the password itself; one of the two. */
    readonly password?: string;
  };
}

export interface ReplicaOptions {
  /** The topic the kvs2 nodes use (their `--kafka-brokers`, `--topic` and security settings). */
  readonly kafka: {
    /** `host:port` of bootstrap brokers. */
    readonly brokers: readonly string[];
    readonly topic: string;
    readonly security?: ReplicaKafkaSecurity;
    /** Partitions if the topic does not exist yet and is created here, as a node would (default 12). */
    readonly partitions?: number;
  };
  /**
   * A folder of this application's own, where the replica keeps its LMDB store (in `store/`, as a node
   * does): kept across restarts, so that a reopened replica reads only what it has not applied yet.
   * Never a running node's data dir (refused), nor one an embedded-log node wrote (refused).
   */
  readonly dataDir: string;
  /** A pino logger (e.g. `logger.child({ component: 'kvs2' })`); default: silent. */
  readonly logger?: Logger;
  /**
   * Peers (`host:port` of running nodes' gRPC) whose store an empty replica installs first (a copy of the
   * peer's LMDB file; the portable snapshot from a peer before those), then reading the topic only from the
   * snapshot's offsets; as a node's `--bootstrap-from`.
   */
  readonly bootstrapFrom?: {
    readonly peers: readonly string[];
    /** PEM CA file to reach the peers over TLS (default: plaintext). */
    readonly tlsCaFile?: string;
    /** A file holding the bearer token for peers that run with --auth-file (needs read on every key). */
    readonly tokenFile?: string;
    /** Give up on a peer that sends nothing for this many ms, and try the next one (default 60000). */
    readonly stallTimeoutMs?: number;
  };
  /** Largest value the nodes accept (their `--max-value-bytes`; default 1 MiB): sizes the fetches. */
  readonly maxValueBytes?: number;
  /**
   * Which thread fetches the topic, parses its records and writes them to the store:
   * - `'worker'` (default): a worker thread of the replica's own (named `kvs2-replica`), which opens the
   *   Kafka client and writes the store; this thread opens the same LMDB environment to read and learns
   *   every commit by message, in commit order. The application's thread spends nothing on the topic: its
   *   reads keep their speed under a heavy write load, and the worker can run on another core.
   * - `'caller'`: all on the application's thread, as a node's main thread does: one thread fewer, but every
   *   fetch, parse and commit competes with the application's reads.
   * Reads, tokens, waits, watches, status and close() behave the same with either.
   */
  readonly applyOn?: 'worker' | 'caller';
  /**
   * Called once if the replica meets a state it cannot repair (as a node would stop): reads then keep
   * answering from what was applied, and waits fail. Default: logged only.
   */
  readonly onFatal?: (error: Kvs2Error) => void;
}

/** A token as Kvs2Client returns it (a Buffer), or any other view of its bytes. */
export type ConsistencyToken = Uint8Array;

/** What a scan covers: keys with a prefix, or keys in [start, end) (no end: to the last key). */
export type ReplicaScanRange =
  | { readonly prefix: Uint8Array }
  | { readonly start: Uint8Array; readonly end?: Uint8Array };

export interface ReplicaEntry {
  readonly key: Buffer;
  readonly value: Buffer;
  /**
   * The key's version: the log position of its last write (that record's offset + 1 in its partition), the
   * same on every node and replica of the topic; a later write of the key has a higher one.
   */
  readonly version: number;
}

/** A change a watch delivers; `token` resumes a watch right after it (`{ after: token }`). */
export interface ReplicaChange {
  readonly kind: 'put' | 'delete';
  readonly key: Buffer;
  /** The new value; undefined for a delete. */
  readonly value: Buffer | undefined;
  readonly token: Buffer;
  /** The change's position (offset + 1 in its partition): a put's is the key's new version. */
  readonly version: number;
}

export interface ReplicaWatchOptions {
  /** Resume after the writes this token names (a Set's token, or a change's); default: from now. */
  readonly after?: ConsistencyToken;
  /**
   * Called once when the watch ends other than by unsubscribing: TOKEN_TOO_OLD (the topic no longer holds
   * the changes after `after`), LOG_RECREATED (the topic was replaced; start again), WATCHER_TOO_SLOW, an
   * error the listener threw, SHUTTING_DOWN at close(). Default: logged.
   */
  readonly onError?: (error: Error) => void;
}

export interface ReplicaPartitionStatus {
  readonly partition: number;
  /** The next offset to apply. */
  readonly appliedOffset: number;
  /** The topic's end as last learnt (about every second); null until known. */
  readonly endOffset: number | null;
  readonly lagRecords: number | null;
}

export interface ReplicaStatus {
  /** Whether the replica has applied everything the topic held when it started (or last rebuilt), and still is. */
  readonly caughtUp: boolean;
  readonly partitions: readonly ReplicaPartitionStatus[];
  /** Keys held. */
  readonly keys: number;
  /** Set once the replica stopped for good (onFatal): reads answer what was applied before. */
  readonly failure: Kvs2Error | null;
}

/**
 * A replica of a kvs2 topic inside this process: every key, kept up to date from Kafka as a node keeps its
 * own, in a store of its own. Reads are lookups in that local LMDB store: synchronous, no RPC, no promise.
 * Reads after a token wait until the replica has applied it, as a node's Get with CONSISTENCY_AT_LEAST does.
 * Writes are not here: they go through Kvs2Client to a node, whose tokens the `...After` reads and `watch`
 * honour. Errors are Kvs2Error with a stable `code`.
 */
export interface Kvs2Replica {
  /**
   * Resolves once the replica has applied everything the topic held when it started (a node turns SERVING
   * then); at once if that already happened. Rejects if the replica fails for good, at close()
   * (SHUTTING_DOWN), or when the signal aborts (CANCELLED; DEADLINE_EXCEEDED for `AbortSignal.timeout`).
   */
  whenCaughtUp(signal?: AbortSignal): Promise<void>;
  /** The value applied now, or undefined. INVALID_ARGUMENT for an empty key or one longer than a store takes. */
  get(key: Uint8Array): Buffer | undefined;
  /** Like get, with the key's version: the entry applied now, or undefined. */
  getEntry(key: Uint8Array): ReplicaEntry | undefined;
  /** The values applied now, one per key in order (undefined where absent). */
  getMany(keys: readonly Uint8Array[]): Array<Buffer | undefined>;
  /** Keys, values and versions in byte order as applied now, from one consistent LMDB snapshot; `limit`: most entries. */
  scan(range: ReplicaScanRange, limit?: number): ReplicaEntry[];
  /**
   * The value once this replica has applied the writes the token(s) name: read-your-writes for a Set made
   * through any node of the topic. TOKEN_FROM_OTHER_LOG for a token of another topic (or of a recreated one).
   */
  getAfter(
    key: Uint8Array,
    after: ConsistencyToken | readonly ConsistencyToken[],
    signal?: AbortSignal,
  ): Promise<Buffer | undefined>;
  /** Like getMany, once the replica has applied the writes the token(s) name. */
  getManyAfter(
    keys: readonly Uint8Array[],
    after: ConsistencyToken | readonly ConsistencyToken[],
    signal?: AbortSignal,
  ): Promise<ReadonlyArray<Buffer | undefined>>;
  /**
   * Calls `listener` with every change to the key (or to the keys with the prefix; an empty prefix: every
   * key) as the replica applies it, in topic order per partition; with `after`, first the changes since that
   * token, read back from the topic. The same watch as a node's Watch RPC. Returns the unsubscribe.
   */
  watch(
    filter: { readonly key: Uint8Array } | { readonly prefix: Uint8Array },
    listener: (change: ReplicaChange) => void,
    options?: ReplicaWatchOptions,
  ): () => void;
  /** A token for what this replica has applied now: a node given it reads no older state. */
  token(): Buffer;
  status(): ReplicaStatus;
  /**
   * Stops the replica (it first applies, for up to 2 s, what the topic held then, so that a reopen replays
   * nothing), then closes the Kafka clients and the store. Watches end with SHUTTING_DOWN, waiting reads
   * fail with it, later calls throw it. Safe to call more than once.
   */
  close(): Promise<void>;
}
