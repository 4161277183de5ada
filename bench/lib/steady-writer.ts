import type { KafkaCluster } from '../systems/kafka.js';
import { kcatProduce } from '../systems/kafka.js';
import { keyFor, seededRandom, valueFor } from './dataset.js';
import { sleep } from './processes.js';

/** How often the pacer hands kcat the lines that are due. */
const TICK_MS = 5;

/**
 * A steady stream of overwrites into a kvs2 topic at a fixed rate: kcat (on the client core unless told, Java murmur2
 * partitioning as kvs2's own producer, acks=all) fed `key\tvalue` lines by a pacer in this process, which
 * hands it, every 5 ms, the lines due by then (rate × time since the start, so no drift). Each record sets
 * a random loaded key to a new value of the same size: every node and replica of the topic applies it as
 * a write. Kafka's ProducerPerformance is no use here: its records have no key, which kvs2 skips.
 */
export class SteadyWriter {
  readonly #stop = new AbortController();
  readonly #done: Promise<{ seconds: number }>;
  readonly #started = performance.now();
  #sent = 0;

  private constructor(
    cluster: KafkaCluster,
    topic: string,
    keys: number,
    valueBytes: number,
    rate: number,
    seed: number,
    core: number | undefined,
  ) {
    this.#done = kcatProduce(cluster, topic, this.#lines(keys, valueBytes, rate, seed), core);
    this.#done.catch(() => {});
  }

  static start(
    cluster: KafkaCluster,
    topic: string,
    /** `core`: where kcat runs (default the client core). */
    options: { keys: number; valueBytes: number; recordsPerSec: number; seed: number; core?: number },
  ): SteadyWriter {
    return new SteadyWriter(
      cluster,
      topic,
      options.keys,
      options.valueBytes,
      options.recordsPerSec,
      options.seed,
      options.core,
    );
  }

  /** Ends the stream; resolves with the lines handed to kcat and the rate, once kcat has sent them and exited. */
  async stop(): Promise<{ records: number; recordsPerSec: number }> {
    const seconds = (performance.now() - this.#started) / 1000;
    this.#stop.abort();
    await this.#done;
    return { records: this.#sent, recordsPerSec: this.#sent / seconds };
  }

  async *#lines(keys: number, valueBytes: number, rate: number, seed: number): AsyncGenerator<Buffer> {
    const random = seededRandom(seed);
    const tab = Buffer.from('\t');
    const newline = Buffer.from('\n');
    const start = performance.now();
    while (!this.#stop.signal.aborted) {
      const due = Math.floor(((performance.now() - start) / 1000) * rate);
      if (due > this.#sent) {
        const parts: Buffer[] = [];
        for (let n = this.#sent; n < due; n++) {
          const index = Math.floor(random() * keys);
          // A value other than the loaded one (and than the last write's), so each record is a real overwrite.
          parts.push(keyFor(index), tab, valueFor(index + n + 1, valueBytes), newline);
        }
        this.#sent = due;
        yield Buffer.concat(parts);
      }
      await sleep(TICK_MS);
    }
  }
}
