import { Counter, type Registry } from 'prom-client';
import type { Log, LogBatch, LogPosition, LogWrite, TentativeAppend } from '../log/log.js';
import type { Offsets } from '../offsets.js';
import { CountedHistogram, LatencyCounts } from './latency-histogram.js';

/**
 * A Log that counts its appends (by result) and times them, and otherwise is the log it wraps: the logs
 * themselves know nothing of metrics. The time is the caller's: from the call until the append is durable
 * (or failed), group commit or produce batching included.
 */
export class MeteredLog implements Log {
  readonly #log: Log;
  #ok = 0;
  #failed = 0;
  readonly #latency = new LatencyCounts();

  constructor(log: Log, registry: Registry) {
    this.#log = log;
    const appends: Counter<'result'> = new Counter({
      name: 'kvs2_log_appends_total',
      help: 'Records appended to the log, by result: ok (durable) or error (failed, timed out or cancelled).',
      labelNames: ['result'],
      registers: [registry],
      collect: () => {
        appends.reset();
        appends.inc({ result: 'ok' }, this.#ok);
        appends.inc({ result: 'error' }, this.#failed);
      },
    });
    new CountedHistogram<string>(
      {
        name: 'kvs2_log_append_seconds',
        help: 'Time from an append to the log until it is durable or has failed, in seconds.',
        labelNames: [],
        registry,
      },
      () => [{ labels: {}, counts: this.#latency }],
    );
  }

  get description(): string {
    return this.#log.description;
  }

  get retainsHistory(): boolean {
    return this.#log.retainsHistory;
  }

  get tombstoneRetentionMs(): number | null {
    return this.#log.tombstoneRetentionMs;
  }

  open(signal?: AbortSignal): Promise<string> {
    return this.#log.open(signal);
  }

  reopen(signal?: AbortSignal): Promise<string> {
    return this.#log.reopen(signal);
  }

  partitionOf(key: Buffer): number {
    return this.#log.partitionOf(key);
  }

  // Conditional writes are counted by outcome where they are decided (the service), not here.
  appendTentative(records: readonly LogWrite[], signal: AbortSignal): Promise<TentativeAppend> {
    return this.#log.appendTentative(records, signal);
  }

  async append(key: Buffer, value: Buffer | null, signal: AbortSignal): Promise<LogPosition> {
    const startedAt = performance.now();
    try {
      const position = await this.#log.append(key, value, signal);
      this.#ok++;
      return position;
    } catch (error) {
      this.#failed++;
      throw error;
    } finally {
      this.#latency.observe((performance.now() - startedAt) / 1000);
    }
  }

  endOffsets(signal: AbortSignal): Promise<Offsets> {
    return this.#log.endOffsets(signal);
  }

  startOffsets(signal?: AbortSignal): Promise<Offsets> {
    return this.#log.startOffsets(signal);
  }

  read(from: Offsets, signal: AbortSignal): AsyncIterable<LogBatch> {
    return this.#log.read(from, signal);
  }

  releaseBefore(offsets: Offsets): void {
    this.#log.releaseBefore(offsets);
  }

  close(): Promise<void> {
    return this.#log.close();
  }
}
