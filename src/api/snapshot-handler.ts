import { type ServerWritableStream, status } from '@grpc/grpc-js';
import { pause } from '../abort.js';
import { describeError, isKvs2Error, Kvs2Error } from '../errors.js';
import { type SnapshotChunk, SnapshotFormat, type SnapshotRequest } from '../gen/kvs2.js';
import type { KvService } from '../service/kv-service.js';
import { type CallGuard, type CallNeeds, EVERY_KEY } from './call-auth.js';
import type { MethodCallObserver } from './call-observer.js';
import { DirectTransfer, type DirectTransferEndpoint } from './direct-transfer.js';
import { MalformedRequest, type Received } from './kvs2-definition.js';
import { PacedWriter } from './paced-writer.js';
import { resetStream, type SendStall, type SendStallOptions, sendStallError } from './send-stall.js';
import { toStatusError } from './status-mapping.js';

export interface SnapshotHandlerOptions {
  readonly service: KvService;
  /** Open snapshot streams, each as a function that ends it: shutdown ends them instead of waiting. */
  readonly open: Set<(reason: Kvs2Error) => void>;
  /** Sees every snapshot call begin and end with its status code. */
  readonly observer: MethodCallObserver;
  /** Checks the caller's token and permission (--auth-file); null: allowed. */
  readonly guard: CallGuard | null;
  /** Where this server hands out direct transfers of store images; null until it listens (then streamed). */
  readonly directTransfer: () => DirectTransferEndpoint | null;
  /** How long a receiver may take nothing before the transfer is ended and its copy removed; who is told. */
  readonly sendStall: SendStallOptions;
}

/** A snapshot is every key and value: it needs read on every key, as Status does. */
const NEEDS: CallNeeds = { access: 'read', targets: [EVERY_KEY] };

/**
 * Most bytes of chunks handed to grpc-js that HTTP/2 has not yet taken. The encoder reads the next entries
 * only when asked, so this, not the snapshot's size, is what a stream holds in memory.
 */
const MAX_UNSENT_BYTES = 2 * 1024 * 1024;

/**
 * The slowest pace a snapshot may ask for. Its read transaction pins every page freed while it runs: a
 * trickle would keep a busy store growing for hours.
 */
const MIN_BYTES_PER_SECOND = 64 * 1024;

const EMPTY_DATA = Buffer.alloc(0);

type SnapshotCall = ServerWritableStream<Received<SnapshotRequest>, SnapshotChunk>;

/**
 * Streams a snapshot of the node's store at the client's pace, in the format asked for: portable
 * (service.snapshot()) or a store image (service.storeImage(), a copy of the store's file). It asks for
 * the next chunk only while the stream takes data, so a slow client holds the snapshot's read transaction
 * (or the image's copy on disk) longer, never more memory. The encoder (and its read transaction, which
 * pins LMDB pages while open) or the image (and its copy) is closed when the stream ends, fails, is
 * cancelled or is ended by shutdown.
 *
 * A receiver that takes nothing for `sendStall.limitMs` while bytes wait for it (a hung process, a partition
 * without a reset) would hold the copy and the stream forever: the transfer is ended then (DEADLINE_EXCEEDED,
 * the direct socket destroyed, the HTTP/2 stream reset since its status would queue behind the untaken
 * bytes), the copy removed, and `sendStall.onStall` told. A slow receiver that keeps taking bytes is not.
 */
export function snapshotHandler({ service, open, observer, guard, directTransfer, sendStall }: SnapshotHandlerOptions) {
  return (call: SnapshotCall): void => {
    const startedAt = observer.started();
    const request = call.request;
    if (request instanceof MalformedRequest) {
      fail(call, observer, startedAt, new Kvs2Error('INVALID_ARGUMENT', `malformed request: ${request.reason}`));
      return;
    }
    const rate = request.maxBytesPerSecond;
    if (rate > 0 && rate < MIN_BYTES_PER_SECOND) {
      fail(
        call,
        observer,
        startedAt,
        new Kvs2Error(
          'INVALID_ARGUMENT',
          `max_bytes_per_second ${rate} is below ${MIN_BYTES_PER_SECOND} (64 KiB/s): the snapshot would hold its read transaction, and the pages it pins, for hours; 0 sends unpaced`,
        ),
      );
      return;
    }
    const stop = new AbortController();
    const end = (reason: Kvs2Error): void => stop.abort(reason);
    open.add(end);
    call.once('cancelled', () => end(new Kvs2Error('CANCELLED', 'the client cancelled the snapshot')));
    let stalledOn: SendStall['transfer'] | null = null;
    const stall: Stall = {
      limitMs: sendStall.limitMs,
      stalled: (what) => {
        if (stop.signal.aborted) return;
        stalledOn = what.transfer;
        sendStall.onStall(what);
        end(sendStallError(what));
      },
    };
    stream(call, request, service, guard, directTransfer(), stop.signal, stall).then(
      () => {
        open.delete(end);
        observer.handled(status.OK, startedAt);
      },
      (error: unknown) => {
        open.delete(end);
        if (isKvs2Error(error) && error.code === 'CANCELLED') observer.handled(status.CANCELLED, startedAt);
        else fail(call, observer, startedAt, error);
        // Only a stalled stream: a direct transfer's receiver stopped reading its socket, not the call,
        // whose status then arrives.
        if (stalledOn === 'stream') resetStream(call);
      },
    );
  };
}

/** The send-side progress limit of one call: its length, and what ends the call when it is hit. */
interface Stall {
  readonly limitMs: number;
  readonly stalled: (stall: SendStall) => void;
}

async function stream(
  call: SnapshotCall,
  request: SnapshotRequest,
  service: KvService,
  guard: CallGuard | null,
  direct: DirectTransferEndpoint | null,
  signal: AbortSignal,
  stall: Stall,
): Promise<void> {
  // With auth on, no snapshot is taken before the caller is known and allowed.
  await guard?.(call, 'Snapshot', NEEDS);
  throwIfAborted(signal);
  if (request.format === SnapshotFormat.SNAPSHOT_FORMAT_STORE_IMAGE) {
    // The copy is made before the first byte goes out; it is removed however the stream ends.
    const image = await service.storeImage(signal);
    try {
      // A paced image is streamed: the pace is for a busy node's reads, and the stream paces itself.
      if (request.directTransfer && request.maxBytesPerSecond === 0 && direct !== null) {
        await sendDirect(call, image, direct, signal, stall);
      } else {
        await pump(call, image, request.maxBytesPerSecond, signal, stall);
      }
    } finally {
      await image.close();
    }
  } else {
    // Any other value (one a later kvs2 may define) gets the portable format, which every reader reads.
    const encoder = await service.snapshot(signal);
    try {
      await pump(call, encoder, request.maxBytesPerSecond, signal, stall);
    } finally {
      encoder.close();
    }
  }
  call.end();
}

/**
 * Hands the client a ticket in the call's only message and sends the image over the direct transfer it
 * opens; the call then ends with the transfer's outcome (OK once every byte went out).
 */
async function sendDirect(
  call: SnapshotCall,
  image: AsyncIterable<Buffer>,
  endpoint: DirectTransferEndpoint,
  signal: AbortSignal,
  stall: Stall,
): Promise<void> {
  const transfer = await DirectTransfer.open(endpoint, signal);
  try {
    call.write({ data: EMPTY_DATA, directTransfer: { port: transfer.port, ticket: transfer.ticket } });
    await transfer.send(image, signal, {
      limitMs: stall.limitMs,
      onStall: (peer, bytesSent) => stall.stalled({ transfer: 'direct', peer, bytesSent, limitMs: stall.limitMs }),
    });
  } catch (error) {
    throwIfAborted(signal);
    throw isKvs2Error(error)
      ? error
      : new Kvs2Error('STORE_UNAVAILABLE', `the direct transfer of the store image failed: ${describeError(error)}`);
  } finally {
    transfer.close();
  }
}

/**
 * Writes every chunk, waiting while HTTP/2 has not taken what was written and, with a rate, until the bytes
 * sent so far are due: each chunk (a 64 KiB frame, ~1.3 ms of encoding on the event loop) is read from the
 * store only when its time comes, so the encoding itself is spread out and reads run in between.
 */
async function pump(
  call: SnapshotCall,
  chunks: AsyncIterable<Buffer>,
  maxBytesPerSecond: number,
  signal: AbortSignal,
  stall: Stall,
): Promise<void> {
  const writer = new PacedWriter(call, MAX_UNSENT_BYTES, signal, {
    limitMs: stall.limitMs,
    onStall: (bytesSent) =>
      stall.stalled({ transfer: 'stream', peer: call.getPeer(), bytesSent, limitMs: stall.limitMs }),
  });
  const started = performance.now();
  let sent = 0;
  try {
    for await (const data of chunks) {
      throwIfAborted(signal);
      await writer.write({ data }, data.length);
      sent += data.length;
      if (maxBytesPerSecond > 0) {
        const dueMs = (sent / maxBytesPerSecond) * 1000 - (performance.now() - started);
        if (dueMs > 1) await pause(dueMs, signal);
      }
      throwIfAborted(signal);
    }
    await writer.flush();
    throwIfAborted(signal);
  } finally {
    writer.close();
  }
}

function throwIfAborted(signal: AbortSignal): void {
  if (!signal.aborted) return;
  throw isKvs2Error(signal.reason) ? signal.reason : new Kvs2Error('CANCELLED', 'the snapshot was cancelled');
}

/** Ends a snapshot stream with the status its error maps to. */
function fail(call: SnapshotCall, observer: MethodCallObserver, startedAt: number, error: unknown): void {
  const statusError = toStatusError(error);
  observer.handled(statusError.code, startedAt);
  call.emit('error', statusError);
}
