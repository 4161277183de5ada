import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { hashTagOf, murmur2, partitionForKey, toPositive } from '../../../src/log/kafka/murmur2-partitioner.js';

/** Kafka's own vectors: clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java, testMurmur2. */
const KAFKA_UTILS_TEST_VECTORS: ReadonlyArray<[string, number]> = [
  ['21', -973932308],
  ['foobar', -790332482],
  ['a-little-bit-long-string', -985981536],
  ['a-little-bit-longer-string', -1486304829],
  ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
  ['abc', 479470107],
];

/**
 * Computed with Kafka 4.1.1's own classes (kafka-clients jar): `Utils.murmur2(key)` and
 * `BuiltInPartitioner.partitionForKey(key, n)` for n = 3, 12 and 7. Keys are hex; every tail length
 * (0 to 3 bytes past a 4-byte block), bytes with the high bit set, and a 1978-byte key (kvs2's longest).
 */
const JAVA_VECTORS: ReadonlyArray<[key: string, hash: number, p3: number, p12: number, p7: number]> = [
  ['', 275646681, 0, 9, 2],
  ['61', -1563381124, 1, 4, 5],
  ['6162', 316155434, 2, 2, 0],
  ['616263', 479470107, 0, 3, 4],
  ['61626364', -1323649548, 2, 8, 5],
  ['6162636465', 461995741, 1, 1, 4],
  ['6b767332', 666885932, 2, 8, 6],
  ['757365723a3432', -1493546323, 1, 1, 6],
  ['6b65792d30', 29210041, 1, 1, 0],
  ['6b65792d31', 193331640, 0, 0, 5],
  ['6b65792d32', 852269702, 2, 2, 4],
  ['6b65792d33', -1839136101, 2, 11, 4],
  ['6b65792d34', 647367033, 0, 9, 5],
  ['6b65792d35', -1698326880, 2, 8, 4],
  ['6b65792d36', -758453868, 2, 8, 5],
  ['6b65792d37', 713419675, 1, 7, 3],
  ['6b65792d38', -1340033413, 1, 7, 4],
  ['6b65792d39', -1335190451, 0, 9, 2],
  ['68c3a96c6c6f2077c3b6726c64', 439213890, 0, 6, 3],
  ['ff807f00fe', -1958495739, 2, 5, 5],
  ['ff', -311467685, 0, 3, 5],
  ['808182', -1975640061, 2, 11, 6],
];

/** The 1978-byte key of the Java run: byte i is (i * 31 + 7) & 0xff. */
const LONG_KEY = Buffer.from(Array.from({ length: 1978 }, (_, i) => (i * 31 + 7) & 0xff));

describe('murmur2 partitioner', () => {
  test("matches Kafka's UtilsTest.testMurmur2 vectors", () => {
    for (const [key, expected] of KAFKA_UTILS_TEST_VECTORS) {
      assert.equal(murmur2(Buffer.from(key)), expected, key);
    }
  });

  test("matches Kafka's Java Utils.murmur2 and BuiltInPartitioner.partitionForKey", () => {
    for (const [hex, hash, p3, p12, p7] of JAVA_VECTORS) {
      const key = Buffer.from(hex, 'hex');
      assert.equal(murmur2(key), hash, `murmur2(${hex})`);
      assert.deepEqual(
        [partitionForKey(key, 3), partitionForKey(key, 12), partitionForKey(key, 7)],
        [p3, p12, p7],
        `partitions of ${hex}`,
      );
    }
    assert.equal(murmur2(LONG_KEY), -947496087);
    assert.deepEqual(
      [partitionForKey(LONG_KEY, 3), partitionForKey(LONG_KEY, 12), partitionForKey(LONG_KEY, 7)],
      [2, 5, 3],
    );
  });

  test('toPositive clears the sign bit as Java does, also for the smallest integer', () => {
    assert.equal(toPositive(-1), 0x7fffffff);
    assert.equal(toPositive(-2147483648), 0);
    assert.equal(toPositive(42), 42);
  });

  test('reads keys that are views into a larger buffer at any alignment', () => {
    const backing = Buffer.concat([Buffer.from('xyz'), Buffer.from('foobar')]);
    assert.equal(murmur2(backing.subarray(3)), -790332482);
  });

  test("hash tags follow Redis Cluster's rule: the first {…} with something inside", () => {
    const tag = (key: string): string | null => hashTagOf(Buffer.from(key))?.toString() ?? null;
    assert.equal(tag('{user1000}.following'), 'user1000');
    assert.equal(tag('foo{}{bar}'), null);
    assert.equal(tag('foo{{bar}}zap'), '{bar');
    assert.equal(tag('foo{bar}{zap}'), 'bar');
    assert.equal(tag('no-braces'), null);
    assert.equal(tag('open{only'), null);
    assert.equal(tag('}{x}'), 'x');
  });

  test('with hash tags, keys sharing a tag share a partition; untagged keys and murmur2 without tags are unchanged', () => {
    for (const partitions of [3, 12, 97]) {
      const cart = partitionForKey(Buffer.from('{user:42}:cart'), partitions, true);
      assert.equal(partitionForKey(Buffer.from('{user:42}:orders'), partitions, true), cart);
      assert.equal(partitionForKey(Buffer.from('user:42'), partitions), cart);
      for (const [hex, , p3, p12] of JAVA_VECTORS) {
        const key = Buffer.from(hex, 'hex');
        if (hashTagOf(key) !== null) continue;
        if (partitions === 3) assert.equal(partitionForKey(key, 3, true), p3);
        if (partitions === 12) assert.equal(partitionForKey(key, 12, true), p12);
      }
    }
    // Without hash tags a tagged key is an ordinary key: Kafka's producers place it the same way.
    const tagged = Buffer.from('{user:42}:cart');
    assert.equal(partitionForKey(tagged, 12, false), toPositive(murmur2(tagged)) % 12);
  });
});
