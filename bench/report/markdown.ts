import type { BaselineResult, CasPoint, Point, Results, Spread, StandaloneResult } from '../lib/results.js';
import { describeServerArgs } from '../lib/server-args.js';
import { closed, evaluateTargets } from './targets.js';

/** The Markdown summary of one run: targets, ratios to each peer, then every point. */

const int = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (s: Spread | null) => (s ? s.median.toFixed(s.median < 10 ? 2 : 1) : '–');
const rate = (s: Spread | null) => (s ? `${int(s.median)} (${int(s.min)}–${int(s.max)})` : '–');
const mib = (b: number | null) => (b === null ? '–' : (b / 1024 / 1024).toFixed(0));

const PEERS_FOR: Record<string, string[]> = {
  get: ['etcd-serializable', 'etcd-linearizable', 'redis', 'noop', 'http2'],
  multiget: ['etcd-range', 'redis-mget', 'noop', 'http2'],
  set: ['etcd', 'redis', 'redis-aof', 'noop', 'http2'],
};

export function renderMarkdown(results: Results, plotFile: string | null): string {
  const out: string[] = [];
  const opts = results.options as { quick?: boolean; durationSec?: number; repetitions?: number; keys?: number };
  const vb = Number((results.options as { valueBytes?: number }).valueBytes ?? 100);
  const kind = opts.quick ? 'quick run' : results.baseline ? 'comparison with a baseline tree' : 'full run';
  out.push(`# kvs2 benchmark: ${kind} of ${results.startedAt}`, '');
  // A run of the conditional-write points alone loads no data and uses its own generator.
  const casOnly = results.points.length === 0 && results.loads.length === 0 && (results.cas ?? []).length > 0;
  out.push(
    `${casOnly ? 'No data loaded (the counters start absent)' : `${int(opts.keys ?? 0)} keys of 16 B with ${vb} B values`}; ` +
      `each point ${opts.repetitions} × ${opts.durationSec} s after a warm-up, median (min–max) of the repetitions. ` +
      `Wall time ${int(results.wallSeconds)} s. ` +
      (casOnly
        ? 'Load generator: bench/lib/cas-load.ts (Node, grpc-js), pinned to the other core than the servers.'
        : 'Load generators: ghz (gRPC), redis-benchmark (Redis), kcat and Kafka ProducerPerformance (Kafka), ' +
          'pinned to the other core than the server.'),
    '',
  );
  const m = results.machine as Record<string, string | number>;
  out.push(
    `Machine: ${m.cpuModel}, ${m.cores} cores, ${mib(Number(m.memoryBytes))} MiB RAM, Linux ${m.kernel}, ` +
      `Node ${m.node}, tmp on ${m.tmpFilesystem}, load average ${m.loadAverage} at the start` +
      `${m.loadAverageAtEnd ? ` and ${m.loadAverageAtEnd} at the end` : ''}${busyAtStart(m)}. ` +
      `Tree: ${m.gitCommit}. Tools: ${Object.entries(results.tools)
        .filter(([k]) => k.endsWith('version'))
        .map(([k, v]) => `${k.replace('_version', '')} ${v}`)
        .join(', ')}.`,
    '',
  );
  out.push('| System | Durability of an acknowledged write |', '| --- | --- |');
  for (const [name, s] of Object.entries(results.systems)) out.push(`| ${name} | ${s.durability} |`);
  out.push('');

  if (results.baseline) out.push(...baselineSection(results.baseline, String(m.gitCommit)));
  else if (results.points.length > 0 || results.bootstrap !== null || results.memory.length > 0) {
    out.push('## Targets', '', '| Target | Measured | Met |', '| --- | --- | --- |');
    for (const t of evaluateTargets(results, vb)) {
      out.push(`| ${t.target} | ${t.measured} | ${t.met === null ? '–' : t.met ? 'yes' : 'no'} |`);
    }
    out.push('');
  }

  if (results.points.length > 0) out.push('## kvs2 against each peer (closed loop, calls/s ratio)', '');
  for (const [scenario, peers] of Object.entries(PEERS_FOR)) {
    for (const ours of scenario === 'set' ? ['kvs2', 'kvs2-kafka'] : ['kvs2']) {
      const mine = closed(results, scenario, ours, vb);
      if (mine.length === 0) continue;
      const present = peers.filter((p) => closed(results, scenario, p, vb).length > 0);
      out.push(
        `| ${scenario} | ${ours} calls/s | ${present.map((p) => `${ours}/${p}`).join(' | ')} |`,
        `| --- | --- |${present.map(() => ' --- |').join('')}`,
      );
      for (const point of mine) {
        const cells = present.map((peer) => {
          const other = closed(results, scenario, peer, vb).find((p) => p.concurrency === point.concurrency);
          // A peer that answered nothing (it failed: its table shows the errors) has no ratio.
          return point.opsPerSec && other?.opsPerSec && other.opsPerSec.median > 0
            ? `${(point.opsPerSec.median / other.opsPerSec.median).toFixed(2)}`
            : '–';
        });
        out.push(`| ${point.concurrency} in flight | ${rate(point.opsPerSec)} | ${cells.join(' | ')} |`);
      }
      out.push('');
    }
  }
  if (plotFile) out.push(`![p99 latency against throughput](${plotFile})`, '');

  const sections: Array<[string, (p: Point) => boolean]> = [
    ['Get, closed loop', (p) => p.scenario === 'get' && p.mode === 'closed' && p.valueBytes === vb],
    ['Get, fixed rates', (p) => p.scenario === 'get' && p.mode === 'rate' && p.valueBytes === vb],
    ['MultiGet of 100 keys, closed loop', (p) => p.scenario === 'multiget' && p.mode === 'closed'],
    ['MultiGet of 100 keys, fixed rates', (p) => p.scenario === 'multiget' && p.mode === 'rate'],
    ['Set, closed loop', (p) => p.scenario === 'set' && p.valueBytes === vb],
    ['Batched writes: Write of 100 mutations, closed loop', (p) => p.scenario === 'write' && p.valueBytes === vb],
    ['Large values: Get', (p) => p.scenario === 'get' && p.valueBytes !== vb],
    ['Large values: Set', (p) => p.scenario === 'set' && p.valueBytes !== vb],
  ];
  for (const [title, filter] of sections) {
    const points = results.points.filter(filter);
    if (points.length === 0) continue;
    out.push(`## ${title}`, '', ...pointsTable(points), '');
  }

  if ((results.cas ?? []).length > 0) out.push(...casSection(results.cas ?? []));
  for (const standalone of results.standalone ?? []) out.push(...standaloneSection(standalone));

  const paired = results.pairedGet ?? [];
  if (paired.length > 0) {
    out.push(
      '## Get against the no-op server, alternated',
      '',
      'Both servers up on the server core; repetitions alternate (kvs2, no-op, then no-op, kvs2, ...) and the ratio is taken pair by pair.',
      '',
      '| In flight | kvs2 calls/s | no-op calls/s | kvs2 / no-op |',
      '| --- | --- | --- | --- |',
      ...paired.map(
        (p) =>
          `| ${p.concurrency} | ${rate(p.kvs2)} | ${rate(p.noop)} | ${p.ratio ? `${p.ratio.median.toFixed(2)} (${p.ratio.min.toFixed(2)}–${p.ratio.max.toFixed(2)})` : '–'} |`,
      ),
      '',
    );
  }
  const kp = results.kafkaProducer;
  if (kp) {
    out.push(
      '## Kafka producer ceiling',
      '',
      `Kafka's ProducerPerformance, ${int(kp.records)} records of ${kp.recordBytes} B, acks=all, one broker: ` +
        `${rate(kp.recordsPerSec)} records/s, p50 ${ms(kp.p50Ms)} ms, p99 ${ms(kp.p99Ms)} ms, p99.9 ${ms(kp.p999Ms)} ms ` +
        '(latency from send to acknowledgement, with the producer batching as much as it likes).',
      '',
    );
  }
  const boot = results.bootstrap;
  if (boot) {
    out.push(
      '## Bootstrap',
      '',
      `A new node with an empty store on a topic of ${int(boot.records)} records, until health SERVING; kcat reading the same topic to its end.`,
      '',
      '| Reader | Seconds | Records/s |',
      '| --- | --- | --- |',
      `| kvs2 (spawn → SERVING) | ${ms(boot.kvs2.servingSec)} | ${rate(boot.kvs2.recordsPerSec)} |`,
      `| kvs2 catch-up alone (listening → SERVING) | ${ms(boot.kvs2.catchUpOnlySec)} | |`,
      `| kcat -C -e -o beginning | ${ms(boot.kcat.seconds)} | ${rate(boot.kcat.recordsPerSec)} |`,
      ...(boot.peer
        ? [
            `| kvs2 --bootstrap-from a serving peer (spawn → SERVING) | ${ms(boot.peer.servingSec)} | ${rate(boot.peer.recordsPerSec)} |`,
            `| kvs2 --bootstrap-from, catch-up alone (listening → SERVING) | ${ms(boot.peer.catchUpOnlySec)} | ${rate(boot.peer.catchUpOnlyRecordsPerSec)} |`,
            `| the peer's snapshot alone (asked → installed: ${int(boot.peer.keys)} keys) | ${ms(boot.peer.peerLoadSec)} | |`,
          ]
        : []),
      '',
      ...(boot.peer
        ? [
            `The peer is the node that applied the topic as it was loaded, serving on the server core beside the broker; the new node runs on the client core as kcat does. Peer bootstrap ÷ kcat: ${boot.peer.ratioToKcat?.toFixed(2) ?? '–'}× (records/s, medians); keys/s ${rate(boot.peer.keysPerSec)}.`,
            '',
          ]
        : []),
    );
  }
  if (results.memory.length > 0) {
    out.push(
      '## Memory and disk after loading',
      '',
      '| System | Keys | Value B | RSS MiB | RSS MiB per 1M keys | Disk MiB | Disk MiB per 1M keys | Details |',
      '| --- | --- | --- | --- | --- | --- | --- | --- |',
    );
    for (const r of results.memory) {
      const details = Object.entries(r.details)
        .filter(([, v]) => v !== null)
        .map(([k, v]) => `${k} ${typeof v === 'number' ? `${mib(v)} MiB` : v}`)
        .join(', ');
      out.push(
        `| ${r.system} | ${int(r.keys)} | ${r.valueBytes} | ${mib(r.rssBytes)} | ${mib(r.rssBytesPerMillionKeys)} | ` +
          `${mib(r.diskBytes)} | ${mib(r.diskBytesPerMillionKeys)} | ${details} |`,
      );
    }
    out.push('');
  }
  if (results.loads.length > 0) {
    out.push('## Loading', '', '| System | Keys | Value B | Seconds | Keys/s |', '| --- | --- | --- | --- | --- |');
    for (const l of results.loads) {
      out.push(`| ${l.system} | ${int(l.keys)} | ${l.valueBytes} | ${l.seconds.toFixed(1)} | ${int(l.keysPerSec)} |`);
    }
    out.push('');
  }
  if (results.profile) {
    out.push(
      '## Where kvs2 spends its CPU during Get (64 in flight, node --cpu-prof)',
      '',
      'Share of the non-idle samples of the measured run, by component and by function.',
      '',
    );
    out.push('| Component | Self time % |', '| --- | --- |');
    for (const c of results.profile.byComponent) out.push(`| ${c.component} | ${c.selfPercent} |`);
    out.push('', '| Function | Self time % |', '| --- | --- |');
    for (const f of results.profile.topSelf) out.push(`| \`${f.fn}\` | ${f.selfPercent} |`);
    out.push('');
  }
  if (results.skipped.length > 0) {
    out.push('## Skipped', '');
    for (const s of results.skipped) out.push(`- ${s.what}: ${s.why.split('\n')[0]}`);
    out.push('');
  }
  if (results.notes.length > 0) {
    out.push('## Notes', '');
    for (const n of results.notes) out.push(`- ${n}`);
    out.push('');
  }
  return out.join('\n');
}

/** A side's extra `kvs2 serve` flags, as code; results written before the flags existed had none. */
function flags(args: readonly string[] | undefined): string {
  return args === undefined || args.length === 0 ? '(none)' : `\`${describeServerArgs(args)}\``;
}

function baselineSection(baseline: BaselineResult, commit: string): string[] {
  const ratio = (s: Spread | null) => (s ? `${s.median.toFixed(3)} (${s.min.toFixed(3)}–${s.max.toFixed(3)})` : '–');
  const cpu = (s: Spread | null) => (s ? s.median.toFixed(3) : '–');
  const rows = [
    '## This tree against the baseline, alternated',
    '',
    `This tree: ${commit}, server flags ${flags(baseline.currentArgs)}. Baseline: ` +
      `${baseline.sameTree ? 'this same build' : `${baseline.commit} (${baseline.tree})`}, server flags ` +
      `${flags(baseline.baselineArgs)}. Both nodes up on the server core, ` +
      'one idle while the other is measured; repetitions alternate (this, baseline, then baseline, this, ...) ' +
      'and the ratio is taken pair by pair.',
    '',
    '| Call | Log | In flight | This tree calls/s | Baseline calls/s | This ÷ baseline | p99 ms this / baseline | Server CPU s per 1k calls this / baseline | Pairs | Errors |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const c of baseline.comparisons) {
    const errors = [...c.current.samples, ...c.baseline.samples].reduce((sum, s) => sum + s.errors, 0);
    out(rows, [
      c.scenario,
      c.log,
      String(c.concurrency),
      rate(c.current.opsPerSec),
      rate(c.baseline.opsPerSec),
      ratio(c.ratio),
      `${ms(c.current.p99Ms)} / ${ms(c.baseline.p99Ms)}`,
      `${cpu(c.current.serverCpuSecPer1kOps)} / ${cpu(c.baseline.serverCpuSecPer1kOps)}`,
      String(c.current.samples.length),
      String(errors),
    ]);
  }
  rows.push('');
  return rows;
}

const CAS_OURS = ['kvs2', 'kvs2-kafka'];

/** Server CPU per 1k increments; with several server processes (kvs2 on Kafka), each one's in the first repetition. */
function cpuCell(p: CasPoint): string {
  if (!p.serverCpuSecPer1kIncrements) return '–';
  const parts = p.samples[0]?.serverCpuSecPer1kIncrementsByProcess ?? [];
  const split = parts.length > 1 ? ` (${parts.map((c) => c.toFixed(2)).join(' + ')})` : '';
  return `${p.serverCpuSecPer1kIncrements.median.toFixed(3)}${split}`;
}

/** The conditional-write points: every system's table, then kvs2 ÷ etcd point by point. */
/** A script's own report, its headings two levels down, under a heading that says how it ran. */
function standaloneSection(standalone: StandaloneResult): string[] {
  const body = standalone.markdown
    .trim()
    .split('\n')
    .filter((line, i) => !(i === 0 && line.startsWith('# ')))
    .map((line) => (line.startsWith('#') ? `##${line}` : line));
  return [
    `## Scenario ${standalone.scenario} (\`${standalone.command}\`, ${Math.round(standalone.seconds)} s)`,
    '',
    ...body,
    '',
  ];
}

export function casSection(points: readonly CasPoint[]): string[] {
  const shape = (p: CasPoint) =>
    p.contended
      ? `${p.concurrency} workers on ${p.keys} shared counter${p.keys === 1 ? '' : 's'}`
      : `${p.concurrency} workers, a counter each`;
  const rows = [
    '## Conditional writes: read-modify-write increments',
    '',
    "Each worker loops: read its counter and the counter's version, then write the counter + 1 on condition that " +
      'the version is unchanged; a conflict is retried with a new read. Increments/s counts applied writes; the ' +
      'latency is the conditional call alone (applied or conflicting), the read beside it. After every ' +
      'repetition the counters, read back, must add up to the applied increments (Check). Generator: ' +
      'bench/lib/cas-load.ts (Node, grpc-js) on the client core. Every system is up on the server core for the ' +
      "whole scenario, idle but for the one measured, and each point's repetitions alternate between them " +
      '(forward, then backward), so a slow minute of the host weighs on both sides of a ratio.',
    '',
  ];
  for (const system of [...new Set(points.map((p) => p.system))]) {
    const mine = points.filter((p) => p.system === system);
    const first = mine[0];
    const connections = Math.max(...mine.map((p) => p.connections));
    if (first) rows.push(`- ${system}: read: ${first.read}; write: ${first.write}; up to ${connections} connections.`);
  }
  rows.push(
    '',
    '| System | Load | Increments/s median (min–max) | Conflicts per success | Conditional call p50 ms | p99 ms | p99.9 ms | Read p50 ms | Read p99 ms | Server CPU s per 1k increments (node + broker) | Cores busy % | Errors | Check |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  );
  for (const p of points) {
    out(rows, [
      p.system,
      shape(p),
      rate(p.incrementsPerSec),
      p.conflictsPerSuccess ? p.conflictsPerSuccess.median.toFixed(2) : '–',
      ms(p.p50Ms),
      ms(p.p99Ms),
      ms(p.p999Ms),
      ms(p.readP50Ms ?? null),
      ms(p.readP99Ms ?? null),
      cpuCell(p),
      p.samples[0]?.coreBusyPercent.map((b) => b.toFixed(0)).join('/') ?? '',
      String(p.errors),
      p.checked ? `ok (${int(p.samples.reduce((sum, s) => sum + s.check.expected, 0))} increments)` : 'FAILED',
    ]);
  }
  rows.push('');
  const etcd = points.filter((p) => p.system === 'etcd');
  const ours = CAS_OURS.filter((system) => points.some((p) => p.system === system));
  if (etcd.length > 0 && ours.length > 0) {
    rows.push(
      `| Load | ${ours.map((o) => `${o} ÷ etcd increments/s`).join(' | ')} | ${ours.map((o) => `${o} ÷ etcd p99`).join(' | ')} |`,
      `| --- |${ours.map(() => ' --- |').join('')}${ours.map(() => ' --- |').join('')}`,
    );
    for (const e of etcd) {
      const same = (o: string) =>
        points.find((p) => p.system === o && p.concurrency === e.concurrency && p.keys === e.keys);
      const ratio = (a: Spread | null | undefined, b: Spread | null) =>
        a && b && b.median > 0 ? (a.median / b.median).toFixed(2) : '–';
      out(rows, [
        shape(e),
        ...ours.map((o) => ratio(same(o)?.incrementsPerSec, e.incrementsPerSec)),
        ...ours.map((o) => ratio(same(o)?.p99Ms, e.p99Ms)),
      ]);
    }
    rows.push('');
  }
  return rows;
}

function pointsTable(points: readonly Point[]): string[] {
  const rows = [
    '| Contender | Load | Calls/s median (min–max) | Keys/s | p50 ms | p99 ms | p99.9 ms | Server CPU s per 1k calls | Cores busy % | Load avg | Errors |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const p of points) {
    const load = p.mode === 'closed' ? `${p.concurrency} in flight` : `${int(p.targetRps ?? 0)}/s fixed`;
    const keys = p.opsPerSec && p.keysPerCall > 1 ? int(p.opsPerSec.median * p.keysPerCall) : '';
    const cpu = p.serverCpuSecPer1kOps ? p.serverCpuSecPer1kOps.median.toFixed(3) : '–';
    const busy = p.samples[0]?.coreBusyPercent.map((b) => b.toFixed(0)).join('/') ?? '';
    out(rows, [
      `${p.contender}${p.valueBytes > 256 ? ` (${p.valueBytes} B)` : ''}`,
      load,
      rate(p.opsPerSec),
      keys,
      ms(p.p50Ms),
      ms(p.p99Ms),
      ms(p.p999Ms),
      cpu,
      busy,
      p.samples[0]?.loadAverage1m === undefined ? '' : String(p.samples[0].loadAverage1m),
      String(p.errors),
    ]);
  }
  return rows;
}

function out(rows: string[], cells: string[]): void {
  rows.push(`| ${cells.join(' | ')} |`);
}

/**
 * A note when the machine was busy before the run began. Only the start tells: during and after the run its
 * own server and load generator keep every core busy.
 */
function busyAtStart(machine: Record<string, string | number>): string {
  const oneMinute = Number(String(machine.loadAverage).split(' ')[0]);
  const cores = Number(machine.cores);
  return oneMinute > cores ? ` (above ${cores} at the start: the machine was busy just before or still is)` : '';
}
