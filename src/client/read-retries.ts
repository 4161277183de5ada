import { Kvs2ClientOptionError, type Kvs2ClientOptions, wholeNumberOption } from './client-options.js';

/** The RPCs retried on UNAVAILABLE: reads only. */
const RETRIED_METHODS = ['Get', 'MultiGet', 'Scan', 'Status'] as const;

/**
 * Channel options that make grpc-js retry reads answered UNAVAILABLE (the node is unreachable, shutting
 * down, or its log or store is briefly out), by gRPC's own retry policy: exponential backoff with jitter,
 * every attempt within the call's one deadline, and the server's retry pushback honoured.
 *
 * Writes (Set, Delete, Write) are never retried: an UNAVAILABLE write may still have reached the log (the
 * append succeeded, the answer was lost), and repeating it later could overwrite a newer value another
 * client wrote in between, or delete one. Only the caller knows whether repeating its write is safe.
 * Watch is not retried either: a broken watch resumes from its last token, which only the caller has. Nor
 * is Snapshot: a stream broken half-way cannot be resumed, and a retry would hand its reader a second
 * snapshot's bytes after the first one's.
 */
export function readRetryChannelOptions(options: Kvs2ClientOptions): Record<string, string | number> {
  const retries = options.readRetries ?? {};
  if (retries === false) return {};
  const maxAttempts = retries.maxAttempts ?? 3;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 2 || maxAttempts > 5) {
    throw new Kvs2ClientOptionError(
      'readRetries.maxAttempts',
      `must be a whole number from 2 to 5, not ${maxAttempts}`,
    );
  }
  const initialMs = wholeNumberOption('readRetries.initialBackoffMs', retries.initialBackoffMs, 100, 1, 60_000);
  const maxMs = wholeNumberOption(
    'readRetries.maxBackoffMs',
    retries.maxBackoffMs,
    Math.max(1000, initialMs),
    initialMs,
    600_000,
  );
  const serviceConfig = {
    methodConfig: [
      {
        name: RETRIED_METHODS.map((method) => ({ service: 'kvs2.Kvs2', method })),
        retryPolicy: {
          maxAttempts,
          initialBackoff: `${initialMs / 1000}s`,
          maxBackoff: `${maxMs / 1000}s`,
          backoffMultiplier: 2,
          retryableStatusCodes: ['UNAVAILABLE'],
        },
      },
    ],
  };
  return {
    'grpc.service_config': JSON.stringify(serviceConfig),
    // The policy is ours: a DNS TXT record must not replace it.
    'grpc.service_config_disable_resolution': 1,
  };
}
