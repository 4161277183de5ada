/**
 * Kafka's default partitioning of keyed records, exactly as the Java client does it
 * (`BuiltInPartitioner.partitionForKey`: `toPositive(Utils.murmur2(key)) % partitions`). kvs2 shares its
 * topic with any Java, librdkafka (`murmur2_random`) or Kafka Streams producer, and all must put a key in the
 * same partition: Kafka orders a key's writes, and compaction keeps only its latest, within one partition,
 * so a key split over two partitions would keep two values that nodes could apply in either order.
 *
 * kvs2 picks the partition itself because the append batcher queues and sends per partition. Not the
 * library's `defaultPartitioner` (it maps negative hashes with `>>> 0` instead of clearing the sign bit, so
 * about half the keys land elsewhere unless the partition count is a power of two), nor its
 * `compatibilityPartitioner`, which agrees with Java but hashes in BigInt arithmetic, far slower on this
 * per-record path (docs/benchmarks.md, "Why these constants").
 */

const SEED = 0x9747b28c;
const M = 0x5bd1e995;
const R = 24;

/** Java's `Utils.murmur2`: MurmurHash2, 32-bit, seed 0x9747b28c, as a signed 32-bit integer. */
export function murmur2(data: Buffer): number {
  const length = data.length;
  let h = SEED ^ length;
  const blocksEnd = length & ~3;
  for (let i = 0; i < blocksEnd; i += 4) {
    let k = data.readInt32LE(i);
    k = Math.imul(k, M);
    k ^= k >>> R;
    k = Math.imul(k, M);
    h = Math.imul(h, M);
    h ^= k;
  }
  const tail = length & 3;
  if (tail === 3) h ^= (data[blocksEnd + 2] ?? 0) << 16;
  if (tail >= 2) h ^= (data[blocksEnd + 1] ?? 0) << 8;
  if (tail >= 1) {
    h ^= data[blocksEnd] ?? 0;
    h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/** Java's `Utils.toPositive`: clears the sign bit (not `Math.abs`, which fails on the minimum value). */
export function toPositive(n: number): number {
  return n & 0x7fffffff;
}

/**
 * A key's hash tag (Redis Cluster's rule): the bytes between its first `{` and the first `}` after it, if
 * there is at least one; null otherwise (`{}` anywhere first, or no braces). `{user:42}:cart` and
 * `{user:42}:orders` share the tag `user:42`.
 */
export function hashTagOf(key: Buffer): Buffer | null {
  const open = key.indexOf(0x7b);
  if (open < 0) return null;
  const close = key.indexOf(0x7d, open + 1);
  return close > open + 1 ? key.subarray(open + 1, close) : null;
}

/**
 * The partition Kafka's Java producer picks for a record with this key; with `hashTags`, a key with a hash
 * tag goes where its tag alone would (so keys sharing a tag share a partition, and a conditional write may
 * span them). Hash tags are a topic-wide choice: every node and every other producer of the topic must
 * partition tagged keys the same way (README "Conditional writes").
 */
export function partitionForKey(key: Buffer, partitions: number, hashTags = false): number {
  const hashed = hashTags ? (hashTagOf(key) ?? key) : key;
  return toPositive(murmur2(hashed)) % partitions;
}
