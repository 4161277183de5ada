import { constants } from 'node:http2';
import { Kvs2Error } from '../errors.js';

/** How long a receiver may take nothing of a snapshot or store image before the node ends it, by default. */
export const DEFAULT_SEND_STALL_TIMEOUT_MS = 60_000;

/** A transfer the node ended because its receiver took nothing for the limit. */
export interface SendStall {
  /** On the Snapshot call's stream, or on a direct transfer's socket. */
  readonly transfer: 'stream' | 'direct';
  /** The receiver's address, as the socket or grpc-js names it. */
  readonly peer: string;
  /** Bytes the receiver's side took before it stopped (handed to the kernel or to HTTP/2). */
  readonly bytesSent: number;
  readonly limitMs: number;
}

/** The node's send-side progress limit (`--snapshot-send-stall-timeout-ms`). */
export interface SendStallOptions {
  readonly limitMs: number;
  /** Told of every transfer ended for a stall (the node logs it). */
  readonly onStall: (stall: SendStall) => void;
}

export const DEFAULT_SEND_STALL: SendStallOptions = { limitMs: DEFAULT_SEND_STALL_TIMEOUT_MS, onStall: () => {} };

/** The status a stalled transfer ends with (a receiver that stopped reading may never see it). */
export function sendStallError(stall: SendStall): Kvs2Error {
  const what = stall.transfer === 'direct' ? 'direct transfer of the store image' : 'snapshot stream';
  return new Kvs2Error(
    'DEADLINE_EXCEEDED',
    `the receiver took nothing of the ${what} for ${stall.limitMs} ms, after ${stall.bytesSent} bytes; the node ended it`,
  );
}

/**
 * Resets a server stream's HTTP/2 stream (RST_STREAM CANCEL). grpc-js sends a call's status only after the
 * messages written before it, which a receiver that stopped reading never takes: without a reset the stream,
 * and what it buffered, stays open for as long as the receiver's connection does. grpc-js has no API for it,
 * so the stream is reached through its call object; if that shape ever changes this does nothing (the copy
 * is removed either way) and says so.
 */
export function resetStream(call: object): boolean {
  const inner = (call as { call?: unknown }).call;
  const stream = typeof inner === 'object' && inner !== null ? (inner as { stream?: unknown }).stream : undefined;
  if (typeof stream !== 'object' || stream === null || !('rstCode' in stream)) return false;
  const http2Stream = stream as { close?: unknown; destroyed?: boolean };
  if (typeof http2Stream.close !== 'function') return false;
  if (http2Stream.destroyed !== true)
    (http2Stream.close as (code: number) => void).call(stream, constants.NGHTTP2_CANCEL);
  return true;
}
