import type { Point, Results } from '../lib/results.js';

/**
 * p99 latency against throughput for Get and Set, as a self-contained SVG: closed-loop sweeps as solid
 * lines (labelled with the calls in flight), fixed-rate points as hollow circles on dashed lines.
 */

const WIDTH = 1100;
const PANEL_WIDTH = 520;
const HEIGHT = 470;
const MARGIN = { left: 64, right: 16, top: 40, bottom: 96 };
/** One colour per contender in both panels; kvs2 in blues, peers in their own hues. */
const COLORS: Record<string, string> = {
  kvs2: '#1f5fbf',
  'kvs2-kafka': '#17becf',
  noop: '#7f7f7f',
  http2: '#c7c7c7',
  etcd: '#2ca02c',
  'etcd-serializable': '#2ca02c',
  'etcd-linearizable': '#bcbd22',
  'etcd-range': '#2ca02c',
  redis: '#d62728',
  'redis-mget': '#d62728',
  'redis-aof': '#ff7f0e',
};
const FALLBACK_COLORS = ['#9467bd', '#8c564b', '#e377c2'];

interface Series {
  readonly name: string;
  readonly closed: Array<{ x: number; y: number; label: string }>;
  readonly rate: Array<{ x: number; y: number }>;
}

export function renderPlot(results: Results, valueBytes: number): string {
  const panels = [
    { title: `Get (${valueBytes} B values)`, scenario: 'get' },
    { title: `Set (${valueBytes} B values)`, scenario: 'set' },
  ];
  const others = [...new Set(results.points.map((p) => p.contender))].filter((c) => !(c in COLORS));
  const color = (name: string) =>
    COLORS[name] ?? (FALLBACK_COLORS[others.indexOf(name) % FALLBACK_COLORS.length] as string);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="11">`,
    `<title>Latency against throughput for Get and Set, kvs2 and its peers (${valueBytes} B values)</title>`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
  ];
  panels.forEach((panel, i) => {
    const series = seriesOf(results.points.filter((p) => p.scenario === panel.scenario && p.valueBytes === valueBytes));
    parts.push(renderPanel(panel.title, series, i * (PANEL_WIDTH + 40), color));
  });
  parts.push(
    `<text x="${MARGIN.left}" y="${HEIGHT - 10}" fill="#555">Filled dots on solid lines: closed loop, labelled with the calls in flight. ` +
      'Hollow dots on dashed lines: fixed request rates (x is the rate achieved). Medians of the repetitions.</text>',
    '</svg>',
  );
  return `${parts.join('\n')}\n`;
}

function seriesOf(points: readonly Point[]): Series[] {
  const byName = new Map<string, Series>();
  for (const p of points) {
    if (!p.opsPerSec || !p.p99Ms) continue;
    let s = byName.get(p.contender);
    if (!s) {
      s = { name: p.contender, closed: [], rate: [] };
      byName.set(p.contender, s);
    }
    if (p.mode === 'closed') s.closed.push({ x: p.opsPerSec.median, y: p.p99Ms.median, label: String(p.concurrency) });
    else s.rate.push({ x: p.opsPerSec.median, y: p.p99Ms.median });
  }
  for (const s of byName.values()) {
    s.closed.sort((a, b) => Number(a.label) - Number(b.label));
    s.rate.sort((a, b) => a.x - b.x);
  }
  return [...byName.values()];
}

function renderPanel(title: string, series: Series[], offsetX: number, color: (name: string) => string): string {
  const all = series.flatMap((s) => [...s.closed, ...s.rate]);
  const out: string[] = [`<g transform="translate(${offsetX},0)">`];
  out.push(`<text x="${MARGIN.left}" y="22" font-size="14" font-weight="bold">${escapeXml(title)}</text>`);
  if (all.length === 0) {
    out.push(`<text x="${MARGIN.left}" y="80">not measured in this run</text></g>`);
    return out.join('\n');
  }
  const plotW = PANEL_WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  // Log scales on both axes: throughputs span two decades between Redis and etcd.
  const xMin = 10 ** Math.floor(Math.log10(Math.max(1, Math.min(...all.map((p) => p.x)))));
  const xMax = 10 ** Math.ceil(Math.log10(Math.max(...all.map((p) => p.x)) * 1.01));
  const yMin = 10 ** Math.floor(Math.log10(Math.max(1e-3, Math.min(...all.map((p) => p.y)))));
  const yMax = 10 ** Math.ceil(Math.log10(Math.max(...all.map((p) => p.y)) * 1.01));
  const sx = (x: number) =>
    MARGIN.left + ((Math.log10(x) - Math.log10(xMin)) / (Math.log10(xMax) - Math.log10(xMin))) * plotW;
  const sy = (y: number) =>
    MARGIN.top + plotH - ((Math.log10(y) - Math.log10(yMin)) / (Math.log10(yMax) - Math.log10(yMin))) * plotH;

  out.push(`<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#999"/>`);
  for (let decade = xMin; decade <= xMax * 1.001; decade *= 10) {
    for (const step of [1, 2, 5]) {
      const x = decade * step;
      if (x > xMax * 1.001) break;
      out.push(
        `<line x1="${sx(x)}" y1="${MARGIN.top}" x2="${sx(x)}" y2="${MARGIN.top + plotH}" stroke="${step === 1 ? '#ddd' : '#f2f2f2'}"/>`,
        `<text x="${sx(x)}" y="${MARGIN.top + plotH + 14}" text-anchor="middle">${shortNumber(x)}</text>`,
      );
    }
  }
  for (let decade = yMin; decade <= yMax * 1.001; decade *= 10) {
    for (const step of [1, 2, 5]) {
      const y = decade * step;
      if (y > yMax * 1.001) break;
      out.push(
        `<line x1="${MARGIN.left}" y1="${sy(y)}" x2="${MARGIN.left + plotW}" y2="${sy(y)}" stroke="${step === 1 ? '#ddd' : '#f2f2f2'}"/>`,
        `<text x="${MARGIN.left - 6}" y="${sy(y) + 4}" text-anchor="end">${Number(y.toPrecision(1))}</text>`,
      );
    }
  }
  out.push(
    `<text x="${MARGIN.left + plotW / 2}" y="${MARGIN.top + plotH + 32}" text-anchor="middle">throughput (calls/s, log scale)</text>`,
    `<text transform="translate(16,${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle">p99 latency (ms, log scale)</text>`,
  );
  series.forEach((s, i) => {
    const c = color(s.name);
    if (s.closed.length > 0) {
      out.push(
        `<polyline fill="none" stroke="${c}" stroke-width="2" points="${s.closed.map((p) => `${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ')}"/>`,
      );
      for (const p of s.closed) {
        out.push(
          `<circle cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="3.5" fill="${c}"/>`,
          `<text x="${(sx(p.x) + 5).toFixed(1)}" y="${(sy(p.y) - 5).toFixed(1)}" fill="${c}" font-size="9">${p.label}</text>`,
        );
      }
    }
    if (s.rate.length > 0) {
      out.push(
        `<polyline fill="none" stroke="${c}" stroke-width="1" stroke-dasharray="4 3" points="${s.rate.map((p) => `${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ')}"/>`,
      );
      for (const p of s.rate) {
        out.push(
          `<circle cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="4" fill="white" stroke="${c}" stroke-width="1.5"/>`,
        );
      }
    }
    const lx = MARGIN.left + (i % 3) * 150;
    const ly = MARGIN.top + plotH + 50 + Math.floor(i / 3) * 16;
    out.push(
      `<rect x="${lx}" y="${ly - 8}" width="10" height="10" fill="${c}"/>`,
      `<text x="${lx + 14}" y="${ly + 1}">${escapeXml(s.name)}</text>`,
    );
  });
  out.push('</g>');
  return out.join('\n');
}

function shortNumber(x: number): string {
  if (x >= 1000) return `${(x / 1000).toFixed(x % 1000 === 0 ? 0 : 1)}k`;
  return String(Math.round(x));
}

function escapeXml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}
