import { Metadata, type ServerWritableStream } from '@grpc/grpc-js';
import { isKvs2Error, Kvs2Error } from '../errors.js';
import { type WatchEvent, WatchEvent_Kind, type WatchRequest } from '../gen/kvs2.js';
import type { KvService } from '../service/kv-service.js';
import type { WatchEvent as SessionEvent, WatchSession } from '../service/watch-session.js';
import { MalformedRequest, type Received } from './kvs2-definition.js';
import { toStatusError } from './status-mapping.js';

export interface WatchHandlerOptions {
  readonly service: KvService;
  /** Open watches, each as a function that ends it: shutdown ends them instead of waiting for them. */
  readonly open: Set<(reason: Kvs2Error) => void>;
}

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
export function watchHandler({ service, open }: WatchHandlerOptions) {
  return (call: ServerWritableStream<Received<WatchRequest>, WatchEvent>): void => {
    const request = call.request;
    if (request instanceof MalformedRequest) {
      call.emit('error', toStatusError(new Kvs2Error('INVALID_ARGUMENT', `malformed request: ${request.reason}`)));
      return;
    }
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
      call.emit('error', toStatusError(error));
      return;
    }
    call.sendMetadata(new Metadata());
    void pump(call, session, stop.signal).finally(() => stop.abort());
  };
}

async function pump(
  call: ServerWritableStream<Received<WatchRequest>, WatchEvent>,
  session: WatchSession,
  signal: AbortSignal,
): Promise<void> {
  // Sizes of the events written and not yet taken by HTTP/2, oldest first (write callbacks come in order).
  const unsentSizes: number[] = [];
  let unsentBytes = 0;
  let wake: (() => void) | undefined;
  const wakeUp = (): void => {
    const resume = wake;
    wake = undefined;
    resume?.();
  };
  const written = (): void => {
    unsentBytes -= unsentSizes.shift() ?? 0;
    if (unsentBytes <= MAX_UNSENT_BYTES) wakeUp();
  };
  call.on('drain', wakeUp);
  signal.addEventListener('abort', wakeUp, { once: true });
  try {
    for (;;) {
      const event = await session.next();
      const size = event.key.length + event.value.length + event.token.length;
      unsentSizes.push(size);
      unsentBytes += size;
      call.write({ kind: KIND[event.kind], key: event.key, value: event.value, token: event.token }, written);
      while (!signal.aborted && (call.writableNeedDrain || unsentBytes > MAX_UNSENT_BYTES)) {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    }
  } catch (error) {
    session.close();
    if (isKvs2Error(error) && error.code === 'CANCELLED') return;
    call.emit('error', toStatusError(error));
  } finally {
    call.off('drain', wakeUp);
    signal.removeEventListener('abort', wakeUp);
  }
}
