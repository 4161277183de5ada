import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Kvs2Error } from '../../src/errors.js';
import {
  encodeImageHeader,
  IMAGE_HEADER_BYTES,
  imageMetadataOf,
  parseImageMetadata,
} from '../../src/snapshot/image-format.js';
import { metadataOf, parseMetadata, SNAPSHOT_FORMAT_VERSION } from '../../src/snapshot/snapshot-format.js';

const facts = {
  storeFormat: 2,
  logIdentity: 'kafka:AbCdEf0123456789',
  appliedOffsets: new Map([
    [0, 12],
    [3, 7],
  ]),
  caughtUpAt: 1_764_000_000_000,
  keys: 19,
  createdAt: 1_764_000_000_500,
};

/** A store image's metadata as the node writes it, as JSON, then with `change` applied. */
function imageJson(change: (fields: Record<string, unknown>) => void = () => {}): Buffer {
  const header = encodeImageHeader(imageMetadataOf({ ...facts, bytes: 4096 }));
  const fields = JSON.parse(header.subarray(IMAGE_HEADER_BYTES).toString('utf8')) as Record<string, unknown>;
  change(fields);
  return Buffer.from(JSON.stringify(fields));
}

/** A snapshot's metadata as JSON, from metadataOf, then with `change` applied. */
function snapshotJson(change: (fields: Record<string, unknown>) => void = () => {}): Buffer {
  const metadata = metadataOf(facts);
  const fields: Record<string, unknown> = { ...metadata, appliedOffsets: Object.fromEntries(metadata.appliedOffsets) };
  change(fields);
  return Buffer.from(JSON.stringify(fields));
}

function refused(parse: () => unknown, message: RegExp): void {
  assert.throws(parse, (error: unknown) => {
    assert.ok(error instanceof Kvs2Error, String(error));
    assert.equal(error.code, 'SNAPSHOT_INVALID');
    assert.match(error.message, message);
    return true;
  });
}

describe('metadata of store images and snapshots', () => {
  test('what a node writes reads back whole', () => {
    const image = parseImageMetadata(imageJson());
    assert.deepEqual(
      [image.logIdentity, image.logKind, [...image.appliedOffsets], image.caughtUpAt, image.keys, image.bytes],
      [facts.logIdentity, 'kafka', [...facts.appliedOffsets], facts.caughtUpAt, 19, 4096],
    );
    const snapshot = parseMetadata(snapshotJson(), SNAPSHOT_FORMAT_VERSION);
    assert.deepEqual(
      [snapshot.logIdentity, [...snapshot.appliedOffsets], snapshot.caughtUpAt, snapshot.keys, snapshot.storeFormat],
      [facts.logIdentity, [...facts.appliedOffsets], facts.caughtUpAt, 19, 2],
    );
    // Never caught up, no log yet: both nulls are taken.
    const fresh = parseImageMetadata(
      imageJson((f) => {
        f.caughtUpAt = null;
        f.logIdentity = null;
        f.logKind = null;
      }),
    );
    assert.deepEqual([fresh.caughtUpAt, fresh.logIdentity, fresh.logKind], [null, null, null]);
  });

  test('a damaged or foreign metadata is refused with the field it got wrong, in both formats', () => {
    refused(() => parseImageMetadata(Buffer.from('{"imageFormat": 1,')), /store image: its metadata is not JSON/);
    refused(
      () => parseMetadata(Buffer.from('[1, 2]'), SNAPSHOT_FORMAT_VERSION),
      /snapshot: its metadata is not an object/,
    );
    const cases: Array<[(f: Record<string, unknown>) => void, RegExp]> = [
      [(f) => (f.keys = -1), /field keys is -1, not a whole number/],
      [(f) => (f.createdAt = 1.5), /field createdAt is 1.5, not a whole number/],
      [(f) => (f.kvs2Version = 7), /field kvs2Version is 7, not a string/],
      [(f) => (f.logIdentity = 'zookeeper:x'), /field logIdentity is "zookeeper:x"/],
      [(f) => (f.appliedOffsets = { p0: 1 }), /field appliedOffsets .* partition: offset/],
      [(f) => (f.appliedOffsets = { 0: -3 }), /field appliedOffsets .* partition: offset/],
      [(f) => (f.caughtUpAt = 'yesterday'), /field caughtUpAt is "yesterday", not a whole number/],
    ];
    for (const [change, message] of cases) {
      refused(() => parseImageMetadata(imageJson(change)), message);
      refused(() => parseMetadata(snapshotJson(change), SNAPSHOT_FORMAT_VERSION), message);
    }
    refused(() => parseImageMetadata(imageJson((f) => (f.imageFormat = 9))), /field imageFormat is 9, not 1/);
    refused(() => parseImageMetadata(imageJson((f) => (f.bytes = null))), /field bytes is null, not a whole number/);
    refused(
      () =>
        parseMetadata(
          snapshotJson((f) => (f.logKind = 'embedded')),
          SNAPSHOT_FORMAT_VERSION,
        ),
      /field logKind is "embedded", not "kafka" \(from logIdentity\)/,
    );
    refused(() => parseMetadata(snapshotJson(), 1), /says format 2 but its header says 1/);
  });
});
