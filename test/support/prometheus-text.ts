/** One sample of the Prometheus text format (version 0.0.4). */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** A scrape, parsed: the samples and each metric family's declared type. */
export interface Scrape {
  readonly samples: readonly Sample[];
  readonly types: ReadonlyMap<string, string>;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/;
const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)/y;

/**
 * Parses the text format as Prometheus reads it, strictly: a line that is neither a comment nor a
 * well-formed sample throws, so a malformed page fails the test that scrapes it.
 */
export function parsePrometheusText(text: string): Scrape {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    if (line.startsWith('#')) {
      const type = /^# TYPE (\S+) (\S+)$/.exec(line);
      if (type) types.set(type[1] as string, type[2] as string);
      continue;
    }
    const match = SAMPLE.exec(line);
    if (!match) throw new Error(`not a sample line: ${line}`);
    samples.push({
      name: match[1] as string,
      labels: parseLabels(match[2] ?? '', line),
      value: parseValue(match[3] as string, line),
    });
  }
  return { samples, types };
}

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  LABEL.lastIndex = 0;
  while (LABEL.lastIndex < text.length) {
    const start = LABEL.lastIndex;
    const match = LABEL.exec(text);
    if (!match || LABEL.lastIndex === start) throw new Error(`bad labels in: ${line}`);
    labels[match[1] as string] = (match[2] as string).replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
  }
  return labels;
}

/** Go's ParseFloat, as Prometheus uses it: NaN and Inf in any case. */
function parseValue(text: string, line: string): number {
  const lower = text.toLowerCase();
  if (lower === 'nan') return Number.NaN;
  if (lower === '+inf' || lower === 'inf') return Number.POSITIVE_INFINITY;
  if (lower === '-inf') return Number.NEGATIVE_INFINITY;
  const value = Number(text);
  if (text.trim() === '' || Number.isNaN(value)) throw new Error(`bad value in: ${line}`);
  return value;
}

/** The samples named `name` whose labels include all of `labels`. */
export function samplesOf(scrape: Scrape, name: string, labels: Readonly<Record<string, string>> = {}): Sample[] {
  return scrape.samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([key, value]) => s.labels[key] === value),
  );
}

/** The value of the one sample named `name` with these labels; undefined if there is none; throws if several. */
export function sampleValue(
  scrape: Scrape,
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number | undefined {
  const found = samplesOf(scrape, name, labels);
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

export interface HttpAnswer {
  readonly status: number;
  readonly contentType: string | null;
  readonly body: string;
}

/** A plain HTTP request to a node's metrics listener (fetch: Node's own HTTP client). */
export async function httpGet(port: number, path: string, method = 'GET'): Promise<HttpAnswer> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, { method });
  return { status: response.status, contentType: response.headers.get('content-type'), body: await response.text() };
}

/** Scrapes /metrics and parses it; throws unless the answer is 200 in the Prometheus text format. */
export async function scrape(port: number): Promise<Scrape> {
  const answer = await httpGet(port, '/metrics');
  if (answer.status !== 200) throw new Error(`/metrics answered ${answer.status}: ${answer.body}`);
  if (!answer.contentType?.startsWith('text/plain; version=0.0.4')) {
    throw new Error(`/metrics answered with content type ${answer.contentType}`);
  }
  return parsePrometheusText(answer.body);
}
