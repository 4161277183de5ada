/**
 * Hard limits that come from the engines underneath, not from configuration.
 */

/** LMDB as built by the `lmdb` package rejects keys longer than this. */
export const STORE_MAX_KEY_BYTES = 1978;

/**
 * The largest value a node accepts when configured to. Beyond this a single gRPC message and a single
 * Kafka record become impractical; large blobs belong in object storage.
 */
export const MAX_VALUE_BYTES_CEILING = 64 * 1024 * 1024;

/** The most keys one MultiGet may be configured to take. */
export const MAX_BATCH_KEYS_CEILING = 1_000_000;
