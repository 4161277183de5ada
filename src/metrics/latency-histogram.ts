import { Histogram, type Registry } from 'prom-client';

/**
 * Upper bounds, in seconds, of every latency histogram kvs2 exports: Prometheus' default buckets (those
 * go-grpc-prometheus uses) with finer ones below 5 ms, where local reads and most appends land.
 */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = Object.freeze([
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]);

/**
 * The observations of one histogram series as plain numbers: observing allocates nothing and looks
 * nothing up, unlike prom-client's `observe`, which hashes the labels on every call. prom-client reads them
 * only when scraped (CountedHistogram).
 */
export class LatencyCounts {
  /** Observations per bucket (not cumulative); the last slot counts those above the last bound. */
  readonly buckets = new Float64Array(LATENCY_BUCKETS_SECONDS.length + 1);
  sum = 0;
  count = 0;

  observe(seconds: number): void {
    const bounds = LATENCY_BUCKETS_SECONDS;
    let i = 0;
    while (i < bounds.length && seconds > (bounds[i] as number)) i++;
    this.buckets[i] = (this.buckets[i] as number) + 1;
    this.sum += seconds;
    this.count++;
  }
}

export interface HistogramSeries<T extends string> {
  readonly labels: Readonly<Record<T, string>>;
  readonly counts: LatencyCounts;
}

type HistogramData<T extends string> = Awaited<ReturnType<Histogram<T>['get']>>;

/**
 * A prom-client histogram whose values come from LatencyCounts kept by their owner. It overrides the two
 * methods the registry reads a histogram through (`get`, and `getForPromString` for the text format), so the
 * registry renders it like any other; the metrics tests scrape it and check its values.
 */
export class CountedHistogram<T extends string> extends Histogram<T> {
  readonly #name: string;
  readonly #help: string;
  readonly #series: () => Iterable<HistogramSeries<T>>;

  constructor(
    options: {
      readonly name: string;
      readonly help: string;
      readonly labelNames: readonly T[];
      readonly registry: Registry;
    },
    series: () => Iterable<HistogramSeries<T>>,
  ) {
    super({
      name: options.name,
      help: options.help,
      labelNames: [...options.labelNames],
      buckets: [...LATENCY_BUCKETS_SECONDS],
      registers: [options.registry],
    });
    this.#name = options.name;
    this.#help = options.help;
    this.#series = series;
  }

  override async get(): Promise<HistogramData<T>> {
    return this.#data();
  }

  async getForPromString(): Promise<HistogramData<T>> {
    return this.#data();
  }

  #data(): HistogramData<T> {
    const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
    const bucketName = `${this.#name}_bucket`;
    for (const { labels, counts } of this.#series()) {
      let cumulative = 0;
      LATENCY_BUCKETS_SECONDS.forEach((bound, i) => {
        cumulative += counts.buckets[i] as number;
        values.push({ labels: { ...labels, le: bound }, value: cumulative, metricName: bucketName });
      });
      values.push({ labels: { ...labels, le: '+Inf' }, value: counts.count, metricName: bucketName });
      values.push({ labels: { ...labels }, value: counts.sum, metricName: `${this.#name}_sum` });
      values.push({ labels: { ...labels }, value: counts.count, metricName: `${this.#name}_count` });
    }
    // prom-client's typings say `type` is a numeric enum, but its registry writes `type` into the text
    // format as it is: at run time every metric carries the string, as this one does.
    const data = { name: this.#name, help: this.#help, type: 'histogram', values, aggregator: 'sum' };
    return data as unknown as HistogramData<T>;
  }
}
