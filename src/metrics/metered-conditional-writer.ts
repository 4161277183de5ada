import { Counter, type Registry } from 'prom-client';
import type { ConditionalMutation, ConditionalVerdict, ConditionalWriter } from '../service/conditional-writes.js';
import { CountedHistogram, LatencyCounts } from './latency-histogram.js';

/**
 * Counts the node's conditional writes by outcome and times their decision (the tentative write, the
 * replica's catch-up below it, the comparison and the commit or abort), the service knowing nothing of
 * metrics. Those passed on by serving workers are decided, hence counted, here too.
 */
export class MeteredConditionalWriter implements ConditionalWriter {
  readonly #writer: ConditionalWriter;
  readonly #counts = { applied: 0, conflict: 0, error: 0 };
  readonly #latency = new LatencyCounts();

  constructor(writer: ConditionalWriter, registry: Registry) {
    this.#writer = writer;
    const outcomes: Counter<'outcome'> = new Counter({
      name: 'kvs2_conditional_writes_total',
      help: 'Conditional writes (compare-and-set) this node decided, by outcome: applied, conflict, or error (timed out, cancelled, log unavailable).',
      labelNames: ['outcome'],
      registers: [registry],
      collect: () => {
        outcomes.reset();
        for (const [outcome, count] of Object.entries(this.#counts)) outcomes.inc({ outcome }, count);
      },
    });
    new CountedHistogram<string>(
      {
        name: 'kvs2_conditional_write_seconds',
        help: 'Time from a conditional write until its verdict (applied or conflict) or its failure, in seconds.',
        labelNames: [],
        registry,
      },
      () => [{ labels: {}, counts: this.#latency }],
    );
  }

  async writeIf(mutations: readonly ConditionalMutation[], signal: AbortSignal): Promise<ConditionalVerdict> {
    const startedAt = performance.now();
    try {
      const verdict = await this.#writer.writeIf(mutations, signal);
      this.#counts[verdict.applied ? 'applied' : 'conflict']++;
      return verdict;
    } catch (error) {
      this.#counts.error++;
      throw error;
    } finally {
      this.#latency.observe((performance.now() - startedAt) / 1000);
    }
  }
}
