import { once } from 'node:events';
import { type ServiceError, status } from '@grpc/grpc-js';
import { statusOf } from '../../src/api/status-mapping.js';
import {
  Consistency,
  type Kvs2Client,
  Kvs2ClientError,
  ReadStatus,
  WatchEvent_Kind,
} from '../../src/client/kvs2-client.js';
import { isKvs2Error } from '../../src/errors.js';
import type { WatchEvent } from '../../src/gen/kvs2.js';
import type { Kvs2ColocatedReader, Kvs2Replica, ReplicaChange } from '../../src/replica-lib/index.js';

/**
 * The read surfaces of kvs2 behind one small interface, so that a conformance scenario is written once and
 * run against each: a node's gRPC server through the Node client, the in-process replica (`openReplica`)
 * and the co-located reader (`openColocatedReader`). Each adapter only translates calls and answers; it
 * never retries, waits or repairs anything, so whatever a surface does differently shows through.
 */

/** One read's answer: the value (undefined when absent) and, where the surface gives one, a token for it. */
export interface SurfaceRead {
  readonly value: Buffer | undefined;
  /** What the surface had applied when it read: handed to another surface, it must read no older state. */
  readonly token: Buffer | undefined;
}

export interface SurfaceReadMany {
  readonly values: ReadonlyArray<Buffer | undefined>;
  readonly token: Buffer | undefined;
}

/** How a waiting read is bounded: a deadline (0: one already passed), or a signal (libraries only). */
export interface WaitBound {
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

export interface SurfaceChange {
  readonly kind: 'put' | 'delete';
  readonly key: string;
  /** The new value as text; undefined for a delete. */
  readonly value: string | undefined;
  readonly token: Buffer;
}

/** A running watch: what it delivered so far, how it ended if it did, and how to stop it. */
export interface SurfaceWatch {
  readonly changes: SurfaceChange[];
  readonly failures: Failure[];
  stop(): void;
}

/** A failure as every surface can state it: the gRPC status and the kvs2 code (README, "Errors"). */
export interface Failure {
  readonly status: string;
  readonly code: string;
}

/** What a surface offers beyond getAfter/getManyAfter; a scenario needing more is not run on it, by name. */
export interface SurfaceFeatures {
  /** A token for what a read saw (the server's reply token, the replica's token()). */
  readonly readToken: boolean;
  /** A read barrier without a token (the server's CONSISTENCY_LATEST). */
  readonly latest: boolean;
  readonly watch: boolean;
  /** Cancelling a waiting read with an AbortSignal. */
  readonly cancel: boolean;
}

export interface ReadSurface {
  readonly name: string;
  readonly features: SurfaceFeatures;
  /** A read of what the surface has applied now, without waiting. */
  read(key: Buffer): Promise<SurfaceRead>;
  /** A read once the surface has applied the writes the tokens name (CONSISTENCY_AT_LEAST). */
  getAfter(key: Buffer, tokens: readonly Buffer[], bound?: WaitBound): Promise<SurfaceRead>;
  getManyAfter(keys: readonly Buffer[], tokens: readonly Buffer[], bound?: WaitBound): Promise<SurfaceReadMany>;
  /** A read that first sees every write acknowledged before it began; only where `features.latest`. */
  getLatest(key: Buffer): Promise<SurfaceRead>;
  /** Resolves once the watch is subscribed: every change applied afterwards reaches it. Only where `features.watch`. */
  watch(prefix: Buffer, after?: Buffer): Promise<SurfaceWatch>;
}

/** What each surface offers, known before any is opened: a suite names what it does not run, and why. */
export const FEATURES = {
  server: { readToken: true, latest: true, watch: true, cancel: false },
  replica: { readToken: true, latest: false, watch: true, cancel: true },
  'replica-worker': { readToken: true, latest: false, watch: true, cancel: true },
  colocated: { readToken: false, latest: false, watch: false, cancel: true },
} as const satisfies Record<string, SurfaceFeatures>;

/** Generous: nothing is timed, a deadline only keeps a broken wait from hanging the suite. */
const DEFAULT_WAIT_MS = 60_000;

function unsupported(surface: string, what: string): never {
  throw new Error(`${surface} has no ${what}: the scenario should not have been run on it`);
}

/**
 * The failure a rejected surface call stands for. A library's Kvs2Error maps to its gRPC status through the
 * server's own mapping (src/api/status-mapping.ts). For the Node client, a deadline or cancellation the
 * client met itself carries no kvs2 code (`GRPC_DEADLINE_EXCEEDED`, `GRPC_CANCELLED`): it is the same
 * failure as the server's DEADLINE_EXCEEDED and CANCELLED, whichever side of the wire noticed first.
 */
export function failureOf(error: unknown): Failure {
  if (error instanceof Kvs2ClientError) {
    const name = statusName(error.code);
    const code =
      error.kvs2Code === `GRPC_${name}` && ['DEADLINE_EXCEEDED', 'CANCELLED'].includes(name) ? name : error.kvs2Code;
    return { status: name, code };
  }
  if (isKvs2Error(error)) return { status: statusName(statusOf(error.code)), code: error.code };
  throw error;
}

function statusName(code: status): string {
  const name = (Object.keys(status) as Array<keyof typeof status>).find((key) => status[key] === code);
  return name ?? `UNKNOWN(${code})`;
}

/** A deadline that has already passed, as `AbortSignal.timeout` reports it once it fired. */
async function passedDeadline(): Promise<AbortSignal> {
  const signal = AbortSignal.timeout(0);
  if (!signal.aborted) await once(signal, 'abort');
  return signal;
}

/** The one signal a library call takes for a bound: its deadline and the caller's signal, whichever fires. */
async function signalOf(bound: WaitBound | undefined): Promise<AbortSignal> {
  const timeoutMs = bound?.timeoutMs ?? DEFAULT_WAIT_MS;
  const deadline = timeoutMs <= 0 ? await passedDeadline() : AbortSignal.timeout(timeoutMs);
  return bound?.signal === undefined ? deadline : AbortSignal.any([deadline, bound.signal]);
}

/** A node's gRPC server, through the Node client (`kvs2/client`). */
export function serverSurface(name: string, client: Kvs2Client): ReadSurface {
  const surface = name;
  const timeoutOf = (bound: WaitBound | undefined): number => {
    if (bound?.signal !== undefined)
      unsupported(surface, 'AbortSignal on unary calls (Kvs2Client takes a deadline only)');
    // A deadline of 0 ms has passed when the call starts: the client fails it without sending it.
    return bound?.timeoutMs ?? DEFAULT_WAIT_MS;
  };
  const readValue = (reply: { status: ReadStatus; data: Buffer }): Buffer | undefined =>
    reply.status === ReadStatus.OK ? reply.data : undefined;
  return {
    name,
    features: FEATURES.server,
    async read(key) {
      const reply = await client.get({ key });
      return { value: readValue(reply), token: reply.token };
    },
    async getAfter(key, tokens, bound) {
      const reply = await client.get(
        { key, consistency: Consistency.CONSISTENCY_AT_LEAST, after: [...tokens] },
        timeoutOf(bound),
      );
      return { value: readValue(reply), token: reply.token };
    },
    async getManyAfter(keys, tokens, bound) {
      const reply = await client.multiGet(
        { keys: [...keys], consistency: Consistency.CONSISTENCY_AT_LEAST, after: [...tokens] },
        timeoutOf(bound),
      );
      return { values: reply.parts.map(readValue), token: reply.token };
    },
    async getLatest(key) {
      const reply = await client.get({ key, consistency: Consistency.CONSISTENCY_LATEST });
      return { value: readValue(reply), token: reply.token };
    },
    async watch(prefix, after) {
      const stream = client.watch({ prefix, ...(after === undefined ? {} : { after }) });
      const changes: SurfaceChange[] = [];
      const failures: Failure[] = [];
      let stopped = false;
      stream.on('data', (event: WatchEvent) => {
        if (event.kind === WatchEvent_Kind.PROGRESS) return;
        changes.push({
          kind: event.kind === WatchEvent_Kind.DELETE ? 'delete' : 'put',
          key: event.key.toString(),
          value: event.kind === WatchEvent_Kind.DELETE ? undefined : event.value.toString(),
          token: event.token,
        });
      });
      const subscribed = Promise.withResolvers<void>();
      stream.on('metadata', () => subscribed.resolve());
      stream.on('error', (error: ServiceError) => {
        // Refused before it was subscribed (a bad token): the call fails, as the library's watch() throws.
        subscribed.reject(new Kvs2ClientError(error));
        if (!stopped) failures.push(failureOf(new Kvs2ClientError(error)));
      });
      // The response headers go out once the node has subscribed the watch (README, "Batched writes...").
      await subscribed.promise;
      return {
        changes,
        failures,
        stop() {
          stopped = true;
          stream.cancel();
        },
      };
    },
  };
}

/** The in-process replica (`openReplica`), read in this process. */
export function replicaSurface(
  name: string,
  replica: Kvs2Replica,
  features: SurfaceFeatures = FEATURES.replica,
): ReadSurface {
  return {
    name,
    features,
    async read(key) {
      // The lookup and the token in one synchronous turn, as a node answers a Get.
      const value = replica.get(key);
      return { value, token: replica.token() };
    },
    async getAfter(key, tokens, bound) {
      const value = await replica.getAfter(key, tokens, await signalOf(bound));
      // The library's reads give no token; token() right after the answer covers at least what it read.
      return { value, token: replica.token() };
    },
    async getManyAfter(keys, tokens, bound) {
      const values = await replica.getManyAfter(keys, tokens, await signalOf(bound));
      return { values, token: replica.token() };
    },
    getLatest() {
      return unsupported(name, 'read barrier');
    },
    async watch(prefix, after) {
      const changes: SurfaceChange[] = [];
      const failures: Failure[] = [];
      const stop = replica.watch(
        { prefix },
        (change: ReplicaChange) =>
          changes.push({
            kind: change.kind,
            key: change.key.toString(),
            value: change.value?.toString(),
            token: change.token,
          }),
        { ...(after === undefined ? {} : { after }), onError: (error) => failures.push(failureOf(error)) },
      );
      // Subscribed when watch() returns: the replica's topic is open (whenCaughtUp resolved before).
      return { changes, failures, stop };
    },
  };
}

/** The co-located reader (`openColocatedReader`) on a running node's data dir. */
export function colocatedSurface(name: string, reader: Kvs2ColocatedReader): ReadSurface {
  return {
    name,
    features: FEATURES.colocated,
    async read(key) {
      return { value: reader.get(key), token: undefined };
    },
    async getAfter(key, tokens, bound) {
      return { value: await reader.getAfter(key, tokens, await signalOf(bound)), token: undefined };
    },
    async getManyAfter(keys, tokens, bound) {
      return { values: await reader.getManyAfter(keys, tokens, await signalOf(bound)), token: undefined };
    },
    getLatest() {
      return unsupported(name, 'read barrier');
    },
    watch() {
      return unsupported(name, 'watch');
    },
  };
}
