import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kvs2Error } from '../../errors.js';
import { checkFrame, isFrameFault } from './frame-codec.js';

const SEGMENT_NAME = /^(\d{20})\.log$/;

/** A segment file's name: the offset of its first record, zero-padded so names sort like offsets. */
export function segmentFileName(baseOffset: number): string {
  return `${String(baseOffset).padStart(20, '0')}.log`;
}

/** Where each frame of a segment lies, so that a reader can start at any offset without a scan. */
export interface SegmentIndex {
  readonly baseOffset: number;
  readonly path: string;
  /** Bytes of whole frames; the file holds nothing else once opened. */
  size: number;
  /** The offset after the segment's last record (its base offset while empty). */
  end: number;
  /** First offset of each frame, ascending. */
  readonly frameOffsets: number[];
  /** File position of each frame. */
  readonly framePositions: number[];
}

/** The segment files in `dir`, oldest first. */
export function listSegments(dir: string): Array<{ baseOffset: number; path: string }> {
  const segments: Array<{ baseOffset: number; path: string }> = [];
  for (const name of readdirSync(dir)) {
    const match = SEGMENT_NAME.exec(name);
    if (match !== null) segments.push({ baseOffset: Number(match[1]), path: join(dir, name) });
  }
  return segments.sort((a, b) => a.baseOffset - b.baseOffset);
}

export interface ScannedSegment {
  readonly index: SegmentIndex;
  /** Set when the file ends in a torn frame: where the whole frames end, and why the rest is not one. */
  readonly torn?: { readonly at: number; readonly fileBytes: number; readonly why: string };
}

/**
 * Reads a segment and indexes its frames, checking every checksum. Only the last segment may end in a
 * torn frame: the one write a crash interrupted before its sync returned (nothing after it was written,
 * and none of its appends was acknowledged). A frame counts as torn when it is cut off by the end of the
 * file, when it is damaged and is the last thing in the file, or when only zeros follow its start (a file
 * extended but never written). Any other damage is corruption of acknowledged records:
 * INCONSISTENT_STATE, so the node stops loudly instead of serving around a hole.
 */
export function scanSegment(
  segment: { baseOffset: number; path: string },
  isLast: boolean,
  previousEnd: number,
): ScannedSegment {
  const bytes = readFileSync(segment.path);
  const index: SegmentIndex = {
    baseOffset: segment.baseOffset,
    path: segment.path,
    size: 0,
    end: segment.baseOffset,
    frameOffsets: [],
    framePositions: [],
  };
  const corrupt = (at: number, why: string): Kvs2Error =>
    new Kvs2Error('INCONSISTENT_STATE', `the embedded log's segment ${segment.path} is corrupt at byte ${at}: ${why}`);
  if (segment.baseOffset < previousEnd) {
    throw corrupt(0, `it starts at offset ${segment.baseOffset}, before the previous segment's end ${previousEnd}`);
  }
  let at = 0;
  while (at < bytes.length) {
    const checked = checkFrame(bytes, at);
    if (isFrameFault(checked)) {
      const lastThing = checked.kind === 'short' || at + checked.bytes === bytes.length || isZero(bytes, at);
      if (!isLast) throw corrupt(at, `a frame in a sealed segment: ${checked.why}`);
      if (!lastThing) throw corrupt(at, `a frame before the end of the file: ${checked.why}`);
      return { index, torn: { at, fileBytes: bytes.length, why: checked.why } };
    }
    if (checked.baseOffset < index.end) {
      throw corrupt(at, `a frame starts at offset ${checked.baseOffset}, before the previous one's end ${index.end}`);
    }
    index.frameOffsets.push(checked.baseOffset);
    index.framePositions.push(at);
    index.end = checked.baseOffset + checked.count;
    at += checked.bytes;
    index.size = at;
  }
  return { index };
}

function isZero(bytes: Buffer, from: number): boolean {
  for (let i = from; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}
