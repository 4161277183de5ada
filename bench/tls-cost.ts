/**
 * What TLS costs kvs2's reads: `Get` on two nodes of this build, one serving plaintext and one TLS
 * (`--tls-cert/--tls-key`, an EC P-256 certificate made here with openssl), loaded with the same keys and
 * measured in alternating rounds (the order swapping each round), so a slow minute of a shared host weighs on
 * both alike. Both run pinned to the server core, ghz on the client core; the ratio is taken round by round.
 *
 *   npm run build && node dist/bench/tls-cost.js [--keys 100000] [--duration 5] [--rounds 6] [--concurrency 1,64]
 */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ChannelCredentials, credentials } from '@grpc/grpc-js';
import { Command } from 'commander';
import { ghzData } from './lib/dataset.js';
import { runGhz } from './lib/ghz.js';
import { loadKvs2 } from './lib/loader.js';
import { describeMachine, treeCommit } from './lib/machine.js';
import { cpuSeconds, freePort, SERVER_CORE, spawnManaged, stopAll, waitFor } from './lib/processes.js';
import { spread } from './lib/stats.js';
import { REPO_DIR } from './lib/tree.js';
import { isServing } from './systems/grpc-health.js';

const options = new Command('tls-cost')
  .option('--keys <n>', 'keys loaded into both nodes', Number, 100_000)
  .option('--duration <s>', 'seconds of one measured run', Number, 5)
  .option('--rounds <n>', 'alternating rounds', Number, 6)
  .option('--concurrency <list>', 'calls in flight, comma-separated', '1,64')
  .option('--value-bytes <n>', 'value size', Number, 100)
  .parse()
  .opts<{ keys: number; duration: number; rounds: number; concurrency: string; valueBytes: number }>();

const work = mkdtempSync(join(tmpdir(), 'kvs2-tls-cost-'));
const getData = join(work, 'get.json');

interface Node {
  readonly name: string;
  readonly target: string;
  readonly pid: number;
  readonly tlsCaFile?: string;
}

interface Sample {
  readonly callsPerSec: number;
  readonly cpuUsPerCall: number;
  readonly p50: number | null;
  readonly p99: number | null;
}

/** A certificate for 127.0.0.1 signed by a CA of its own, as an operator would deploy (not self-signed). */
function makeCertificates(dir: string): { ca: string; cert: string; key: string } {
  const file = (name: string): string => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const quiet = { stdio: 'ignore' } as const;
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      ...ec,
      '-keyout',
      file('ca.key'),
      '-out',
      file('ca.crt'),
      '-days',
      '2',
      '-subj',
      '/CN=kvs2-bench-ca',
    ],
    quiet,
  );
  execFileSync(
    'openssl',
    ['req', '-new', ...ec, '-keyout', file('node.key'), '-out', file('node.csr'), '-subj', '/CN=kvs2-bench'],
    quiet,
  );
  writeFileSync(file('node.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n');
  execFileSync(
    'openssl',
    [
      'x509',
      '-req',
      '-in',
      file('node.csr'),
      '-CA',
      file('ca.crt'),
      '-CAkey',
      file('ca.key'),
      '-set_serial',
      '1',
      '-days',
      '2',
      '-extfile',
      file('node.ext'),
      '-out',
      file('node.crt'),
    ],
    quiet,
  );
  return { ca: file('ca.crt'), cert: file('node.crt'), key: file('node.key') };
}

async function startNode(
  tree: string,
  name: string,
  tlsArgs: readonly string[],
  channel: ChannelCredentials,
  tlsCaFile?: string,
): Promise<Node> {
  const dataDir = join(work, name);
  mkdirSync(dataDir, { recursive: true });
  const target = `127.0.0.1:${await freePort()}`;
  const proc = spawnManaged(
    name,
    process.execPath,
    [join(tree, 'bin/kvs2.js'), 'serve', '--listen', target, '--data-dir', dataDir, '--log-level', 'warn', ...tlsArgs],
    { core: SERVER_CORE, cwd: work, logFile: join(work, `${name}.log`) },
  );
  await waitFor(`${name} to serve`, () => isServing(target, 1_000, channel), 60_000, 100);
  const loaded = await loadKvs2(target, options.keys, options.valueBytes, channel);
  process.stderr.write(`[tls] ${name}: loaded ${options.keys} keys in ${loaded.seconds.toFixed(1)} s\n`);
  return { name, target, pid: proc.pid, ...(tlsCaFile === undefined ? {} : { tlsCaFile }) };
}

async function measure(node: Node, concurrency: number, id: string): Promise<Sample> {
  const call = {
    target: node.target,
    proto: join(REPO_DIR, 'proto/kvs2.proto'),
    call: 'kvs2.Kvs2/Get',
    dataFile: getData,
    ...(node.tlsCaFile === undefined ? {} : { tlsCaFile: node.tlsCaFile }),
  };
  const cpuBefore = cpuSeconds(node.pid);
  const raw = await runGhz(call, { concurrency, durationSec: options.duration }, join(work, `${id}.json`));
  const cpu = cpuSeconds(node.pid) - cpuBefore;
  return {
    callsPerSec: raw.seconds > 0 ? raw.ops / raw.seconds : 0,
    cpuUsPerCall: raw.ops > 0 ? (cpu / raw.ops) * 1e6 : 0,
    p50: raw.latencyMs.p50,
    p99: raw.latencyMs.p99,
  };
}

const fmt = (n: number | null | undefined, digits = 0): string =>
  n === null || n === undefined ? '–' : n.toLocaleString('en-US', { maximumFractionDigits: digits });

async function main(): Promise<void> {
  // This tree's build is copied first, so that a rebuild during the run cannot change what is measured.
  const tree = join(work, 'tree');
  for (const path of ['package.json', 'bin', 'dist', 'proto', 'src/gen/descriptor-set.binpb']) {
    cpSync(join(REPO_DIR, path), join(tree, path), { recursive: true });
  }
  symlinkSync(join(REPO_DIR, 'node_modules'), join(tree, 'node_modules'), 'dir');
  const certs = makeCertificates(work);
  ghzData.kvs2Get(getData, options.keys, 50_000);
  const plain = await startNode(tree, 'plaintext', [], credentials.createInsecure());
  const tls = await startNode(
    tree,
    'tls',
    ['--tls-cert', certs.cert, '--tls-key', certs.key],
    credentials.createSsl(readFileSync(certs.ca)),
    certs.ca,
  );
  const results = [];
  for (const concurrency of options.concurrency.split(',').map(Number)) {
    for (const node of [plain, tls]) await measure(node, concurrency, `${node.name}-${concurrency}-warmup`);
    const rounds: Array<{ plaintext: Sample; tls: Sample }> = [];
    for (let round = 0; round < options.rounds; round++) {
      const order = round % 2 === 0 ? [plain, tls] : [tls, plain];
      const [first, second] = [
        await measure(order[0] as Node, concurrency, `${concurrency}-${round}-a`),
        await measure(order[1] as Node, concurrency, `${concurrency}-${round}-b`),
      ];
      const pair = order[0] === plain ? { plaintext: first, tls: second } : { plaintext: second, tls: first };
      rounds.push(pair);
      process.stderr.write(
        `[tls] ${concurrency} in flight, round ${round + 1}: plaintext ${fmt(pair.plaintext.callsPerSec)}/s ` +
          `${fmt(pair.plaintext.cpuUsPerCall)} µs CPU/call, TLS ${fmt(pair.tls.callsPerSec)}/s ` +
          `${fmt(pair.tls.cpuUsPerCall)} µs CPU/call\n`,
      );
    }
    results.push({
      concurrency,
      plaintext: {
        callsPerSec: spread(rounds.map((r) => r.plaintext.callsPerSec)),
        cpuUsPerCall: spread(rounds.map((r) => r.plaintext.cpuUsPerCall)),
        p50: spread(rounds.map((r) => r.plaintext.p50)),
        p99: spread(rounds.map((r) => r.plaintext.p99)),
      },
      tls: {
        callsPerSec: spread(rounds.map((r) => r.tls.callsPerSec)),
        cpuUsPerCall: spread(rounds.map((r) => r.tls.cpuUsPerCall)),
        p50: spread(rounds.map((r) => r.tls.p50)),
        p99: spread(rounds.map((r) => r.tls.p99)),
      },
      ratio: spread(
        rounds.map((r) => (r.plaintext.callsPerSec > 0 ? r.tls.callsPerSec / r.plaintext.callsPerSec : null)),
      ),
      rounds,
    });
  }
  const report = {
    when: new Date().toISOString(),
    commit: treeCommit(REPO_DIR),
    machine: describeMachine(REPO_DIR),
    options,
    results,
  };
  const out = join(REPO_DIR, 'bench/results', `tls-cost-${report.when.slice(0, 16).replace(/[:T]/g, '-')}.json`);
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  const lines = [
    `| Get, ${options.valueBytes} B values | plaintext calls/s | TLS calls/s | TLS / plaintext (median of rounds) | CPU µs/call plaintext → TLS | p50 ms plaintext → TLS | p99 ms plaintext → TLS |`,
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...results.map(
      (r) =>
        `| ${r.concurrency} in flight | ${fmt(r.plaintext.callsPerSec?.median)} | ${fmt(r.tls.callsPerSec?.median)} | ` +
        `${fmt(r.ratio?.median, 3)} (${fmt(r.ratio?.min, 3)}–${fmt(r.ratio?.max, 3)}) | ` +
        `${fmt(r.plaintext.cpuUsPerCall?.median)} → ${fmt(r.tls.cpuUsPerCall?.median)} | ` +
        `${fmt(r.plaintext.p50?.median, 3)} → ${fmt(r.tls.p50?.median, 3)} | ${fmt(r.plaintext.p99?.median, 2)} → ${fmt(r.tls.p99?.median, 2)} |`,
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n\n(${out})\n`);
}

try {
  await main();
} finally {
  await stopAll();
  rmSync(work, { recursive: true, force: true });
}
