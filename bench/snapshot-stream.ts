/**
 * Takes snapshots of a running node back to back, over the Snapshot RPC with kvs2's client (the one
 * `kvs2 snapshot save --endpoint` uses), until SIGTERM: a new stream is asked for as soon as one ends, so a
 * snapshot is always running. The chunks go to a sink (/dev/null by default), unchecked: what is measured
 * is the node's cost of serving snapshots, not a reader's. bench/snapshot-get.ts runs it as a process of its
 * own, pinned to a core. One JSON line on stdout per event:
 *   {"event":"streaming"}                       the first chunk of the first snapshot arrived
 *   {"event":"snapshot","bytes":N,"ms":M}       a whole snapshot arrived
 *
 *   node dist/bench/snapshot-stream.js host:port [--sink FILE] [--max-bytes-per-second N]
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Kvs2Client } from '../src/client/index.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    sink: { type: 'string', default: '/dev/null' },
    'max-bytes-per-second': { type: 'string', default: '0' },
  },
});
const target = positionals[0];
if (target === undefined) throw new Error('usage: snapshot-stream host:port [--sink FILE]');

const stop = new AbortController();
process.once('SIGTERM', () => stop.abort());
const client = new Kvs2Client(target);
let announced = false;
try {
  while (!stop.signal.aborted) {
    const started = performance.now();
    // Truncated for each snapshot: the sink holds at most one.
    const sink = openSync(values.sink, 'w');
    let bytes = 0;
    try {
      for await (const chunk of client.snapshot({
        signal: stop.signal,
        maxBytesPerSecond: Number(values['max-bytes-per-second']),
      })) {
        if (!announced) {
          announced = true;
          process.stdout.write(`${JSON.stringify({ event: 'streaming' })}\n`);
        }
        writeSync(sink, chunk);
        bytes += chunk.length;
      }
    } catch (error) {
      if (stop.signal.aborted) break;
      throw error;
    } finally {
      closeSync(sink);
    }
    process.stdout.write(
      `${JSON.stringify({ event: 'snapshot', bytes, ms: Math.round(performance.now() - started) })}\n`,
    );
  }
} finally {
  client.close();
}
