import { type fetchV17, IS_CONTROL, IS_TRANSACTIONAL, type RecordsBatch } from '@platformatic/kafka';
import type { LogRecord } from '../log.js';
import { offsetToNumber } from './kafka-offsets.js';

/** What one partition of a fetch response gave: its committed data records and where to read next. */
export interface PartitionChunk {
  readonly records: LogRecord[];
  readonly nextOffset: bigint;
}

/** Control record type in the key of a transaction marker (bytes 2-3 of the key); 1 is commit. */
const ABORT_MARKER = 0;

/**
 * Turns the record batches of one partition, fetched from `fetchOffset` with read_committed isolation,
 * into the records a reader may apply, and the offset after the last batch seen (which moves past
 * compaction gaps, transaction markers and aborted batches, so a partition holding only those advances).
 *
 * Aborted transactions are dropped the way the Java consumer does it: a transactional batch is skipped
 * while its producer has an aborted transaction that started at or before the batch and whose abort
 * marker has not been passed yet. The library filters aborted batches too, but only when the marker is in
 * the same response and for one aborted transaction per producer; this makes the result right whatever
 * it left in.
 */
export function decodePartition(
  partition: number,
  data: fetchV17.FetchResponsePartition,
  fetchOffset: bigint,
): PartitionChunk | null {
  const batches = data.records ?? [];
  if (batches.length === 0) return null;
  const aborted = [...(data.abortedTransactions ?? [])].sort((a, b) => compare(a.firstOffset, b.firstOffset));
  let nextAborted = 0;
  const abortingProducers = new Set<bigint>();
  const records: LogRecord[] = [];
  let nextOffset = fetchOffset;
  for (const batch of batches) {
    const lastOffset = batch.firstOffset + BigInt(batch.lastOffsetDelta);
    // The broker sends whole batches, so the first may start before the offset asked for.
    if (lastOffset < fetchOffset) continue;
    nextOffset = lastOffset + 1n;
    const isControl = (batch.attributes & IS_CONTROL) !== 0;
    if ((batch.attributes & IS_TRANSACTIONAL) !== 0) {
      while (nextAborted < aborted.length && (aborted[nextAborted]?.firstOffset ?? lastOffset + 1n) <= lastOffset) {
        const transaction = aborted[nextAborted++];
        if (transaction !== undefined) abortingProducers.add(transaction.producerId);
      }
      if (isControl) {
        if (isAbortMarker(batch)) abortingProducers.delete(batch.producerId);
        continue;
      }
      if (abortingProducers.has(batch.producerId)) continue;
    }
    if (isControl) continue;
    for (const record of batch.records) {
      const offset = batch.firstOffset + BigInt(record.offsetDelta);
      if (offset < fetchOffset) continue;
      records.push({
        partition,
        offset: offsetToNumber(offset, `partition ${partition}`),
        key: record.key,
        value: record.value,
      });
    }
  }
  return { records, nextOffset };
}

function isAbortMarker(batch: RecordsBatch): boolean {
  const key = batch.records[0]?.key;
  return key !== null && key !== undefined && key.length >= 4 && key.readInt16BE(2) === ABORT_MARKER;
}

function compare(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
