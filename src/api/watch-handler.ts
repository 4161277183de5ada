import { Metadata, type ServerWritableStream, status } from '@grpc/grpc-js';
import { backoffMs, pause } from '../abort.js';
import { describeError, isKvs2Error, Kvs2Error } from '../errors.js';
import { type WatchEvent, WatchEvent_Kind, type WatchRequest } from '../gen/kvs2.js';
import type { KvService } from '../service/kv-service.js';
import type { WatchEvent as SessionEvent, WatchSession } from '../service/watch-session.js';
import { type CallGuard, type CallNeeds, watchTarget } from './call-auth.js';
import type { MethodCallObserver } from './call-observer.js';
import { MalformedRequest, type Received } from './kvs2-definition.js';
import { PacedWriter } from './paced-writer.js';
import { toStatusError } from './status-mapping.js';

export interface WatchHandlerOptions {
  readonly service: KvService;
  /** Open watches, each as a function that ends it: shutdown ends them instead of waiting for them. */
  readonly open: Set<(reason: Kvs2Error) => void>;
  /** Sees every watch begin and end with its status code. */
  readonly observer: MethodCallObserver;
  /** Checks the caller's token and watch permission (--auth-file); null: allowed. */
  readonly guard: CallGuard | null;
  /** Subscribes to reloads of the auth file; each open watch is then checked again. Null without auth. */
  readonly guardReloads: ((listener: () => void) => () => void) | null;
}

/** Re-checks refused OVERLOADED (too many new tokens verified at once) are tried again after this pause. */
const RECHECK_RETRY_MIN_MS = 50;
const RECHECK_RETRY_MAX_MS = 2_000;

/**
 * Most bytes of events handed to grpc-js that HTTP/2 has not yet taken. grpc-js alone holds back up to
 * 16 messages whatever their size; this keeps large values in the session's queue, which is bounded.
 */
const MAX_UNSENT_BYTES = 1024 * 1024;

const KIND: Record<SessionEvent['kind'], WatchEvent_Kind> = {
  put: WatchEvent_Kind.PUT,
  delete: WatchEvent_Kind.DELETE,
  progress: WatchEvent_Kind.PROGRESS,
};

/**
 * Streams a WatchSession to the client. It writes while the stream takes data and waits when it does
 * not, so a slow client leaves events in the session's bounded queue (which cuts it off when full)
 * instead of in gRPC's buffers. HTTP/2 flow control is what stops the stream: a client that stops reading
 * stops granting window, and grpc-js hands a message to HTTP/2 only once the one before was taken.
 *
 * The response headers go out as soon as the watch is subscribed: a client that has them knows that every
 * change applied from then on reaches it.
 */
export function watchHandler({ service, open, observer, guard, guardReloads }: WatchHandlerOptions) {
  return (call: ServerWritableStream<Received<WatchRequest>, WatchEvent>): void => {
    const startedAt = observer.started();
    const request = call.request;
    if (request instanceof MalformedRequest) {
      fail(call, observer, startedAt, new Kvs2Error('INVALID_ARGUMENT', `malformed request: ${request.reason}`));
      return;
    }
    let checked: void | Promise<void>;
    try {
      checked = guard?.(call, 'Watch', needsOf(request));
    } catch (error) {
      fail(call, observer, startedAt, error);
      return;
    }
    if (checked === undefined) start(call, request, startedAt);
    else
      checked.then(
        () => {
          if (call.cancelled) observer.handled(status.CANCELLED, startedAt);
          else start(call, request, startedAt);
        },
        (error: unknown) => fail(call, observer, startedAt, error),
      );
  };

  function start(
    call: ServerWritableStream<Received<WatchRequest>, WatchEvent>,
    request: WatchRequest,
    startedAt: number,
  ): void {
    const stop = new AbortController();
    const end = (reason: Kvs2Error): void => stop.abort(reason);
    open.add(end);
    stop.signal.addEventListener('abort', () => open.delete(end), { once: true });
    call.once('cancelled', () => end(new Kvs2Error('CANCELLED', 'the client cancelled the watch')));
    let session: WatchSession;
    try {
      session = service.watch(request, stop.signal);
    } catch (error) {
      stop.abort();
      fail(call, observer, startedAt, error);
      return;
    }
    call.sendMetadata(new Metadata());
    if (guard !== null && guardReloads !== null) {
      // A watch was allowed by the policy in force when it began; a new policy may take that back.
      const unsubscribe = guardReloads(() => void recheck(call, request, guard, stop.signal, end));
      stop.signal.addEventListener('abort', unsubscribe, { once: true });
    }
    void pump(call, session, stop.signal, observer, startedAt).finally(() => stop.abort());
  }
}

function needsOf(request: WatchRequest): CallNeeds {
  return { access: 'watch', targets: [watchTarget(request)] };
}

/**
 * Checks an open watch against the policy just loaded, and ends it with the refusal (PERMISSION_DENIED, or
 * UNAUTHENTICATED for a token the new file no longer has) if it is no longer allowed. A check refused only
 * because too many new tokens are being verified at once is tried again: it says nothing of the watch.
 */
async function recheck(
  call: ServerWritableStream<Received<WatchRequest>, WatchEvent>,
  request: WatchRequest,
  guard: CallGuard,
  signal: AbortSignal,
  end: (reason: Kvs2Error) => void,
): Promise<void> {
  for (let attempt = 0; !signal.aborted; attempt++) {
    try {
      await guard(call, 'Watch', needsOf(request));
      return;
    } catch (error) {
      if (isKvs2Error(error) && error.code === 'OVERLOADED') {
        await pause(backoffMs(attempt, RECHECK_RETRY_MIN_MS, RECHECK_RETRY_MAX_MS), signal);
        continue;
      }
      // Failing closed: a watch whose caller could not be verified again does not go on.
      end(
        isKvs2Error(error)
          ? error
          : new Kvs2Error('UNAUTHENTICATED', `the caller could not be verified again: ${describeError(error)}`),
      );
      return;
    }
  }
}

/** Ends a watch with the status its error maps to. */
function fail(
  call: ServerWritableStream<Received<WatchRequest>, WatchEvent>,
  observer: MethodCallObserver,
  startedAt: number,
  error: unknown,
): void {
  const statusError = toStatusError(error);
  observer.handled(statusError.code, startedAt);
  call.emit('error', statusError);
}

/** Writes the session's events until it ends, which it only does with an error (or the client cancelling). */
async function pump(
  call: ServerWritableStream<Received<WatchRequest>, WatchEvent>,
  session: WatchSession,
  signal: AbortSignal,
  observer: MethodCallObserver,
  startedAt: number,
): Promise<void> {
  const writer = new PacedWriter(call, MAX_UNSENT_BYTES, signal);
  try {
    for (;;) {
      const event = await session.next();
      const size = event.key.length + event.value.length + event.token.length;
      await writer.write(
        { kind: KIND[event.kind], key: event.key, value: event.value, token: event.token, version: event.version },
        size,
      );
    }
  } catch (error) {
    session.close();
    if (isKvs2Error(error) && error.code === 'CANCELLED') {
      observer.handled(status.CANCELLED, startedAt);
      return;
    }
    fail(call, observer, startedAt, error);
  } finally {
    writer.close();
  }
}
