import type { Point, Results } from '../lib/results.js';

/** The team's targets (issues 5 and 13), evaluated on one run's results. */
export interface TargetCheck {
  readonly target: string;
  readonly measured: string;
  /** null: not measured in this run. */
  readonly met: boolean | null;
}

const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits });

export function closed(results: Results, scenario: string, contender: string, valueBytes: number): Point[] {
  return results.points
    .filter(
      (p) => p.scenario === scenario && p.contender === contender && p.mode === 'closed' && p.valueBytes === valueBytes,
    )
    .sort((a, b) => a.concurrency - b.concurrency);
}

export function best(points: readonly Point[]): Point | null {
  let top: Point | null = null;
  for (const p of points) if (p.opsPerSec && (!top?.opsPerSec || p.opsPerSec.median > top.opsPerSec.median)) top = p;
  return top;
}

function ratePoints(results: Results, scenario: string, contender: string): Point[] {
  return results.points
    .filter((p) => p.scenario === scenario && p.contender === contender && p.mode === 'rate')
    .sort((a, b) => (a.targetRps ?? 0) - (b.targetRps ?? 0));
}

export function evaluateTargets(results: Results, valueBytes: number): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const kvs2Get = closed(results, 'get', 'kvs2', valueBytes);
  const etcdGet = closed(results, 'get', 'etcd-serializable', valueBytes);

  // 1. Get ≥ etcd serializable Range at every concurrency.
  const pairs = kvs2Get.flatMap((k) => {
    const e = etcdGet.find((p) => p.concurrency === k.concurrency);
    return k.opsPerSec && e?.opsPerSec ? [{ c: k.concurrency, ratio: k.opsPerSec.median / e.opsPerSec.median }] : [];
  });
  checks.push({
    target: 'Get ≥ etcd serializable Range at every concurrency',
    measured: pairs.length ? pairs.map((p) => `${p.c}: ${p.ratio.toFixed(2)}×`).join(', ') : 'not measured',
    met: pairs.length ? pairs.every((p) => p.ratio >= 1) : null,
  });

  // 2. Get p99 ≤ 2 ms at half of kvs2's max rate.
  const kvs2Best = best(kvs2Get);
  const half = kvs2Best?.opsPerSec
    ? ratePoints(results, 'get', 'kvs2').find(
        (p) => Math.abs((p.targetRps ?? 0) - (kvs2Best.opsPerSec?.median ?? 0) / 2) < 1 + (p.targetRps ?? 0) * 0.01,
      )
    : undefined;
  checks.push({
    target: "Get p99 ≤ 2 ms at half of kvs2's max rate",
    measured: half?.p99Ms
      ? `p99 ${half.p99Ms.median.toFixed(2)} ms at ${fmt(half.targetRps ?? 0)} calls/s`
      : 'not measured',
    met: half?.p99Ms ? half.p99Ms.median <= 2 : null,
  });

  // 3. MultiGet of 100 keys ≥ 10× the keys/s of single Gets.
  const mgBest = best(closed(results, 'multiget', 'kvs2', valueBytes));
  if (mgBest?.opsPerSec && kvs2Best?.opsPerSec) {
    const keysPerSec = mgBest.opsPerSec.median * mgBest.keysPerCall;
    const ratio = keysPerSec / kvs2Best.opsPerSec.median;
    checks.push({
      target: 'MultiGet of 100 keys ≥ 10× the keys/s of single Gets',
      measured: `${fmt(keysPerSec)} keys/s = ${ratio.toFixed(1)}× Get's ${fmt(kvs2Best.opsPerSec.median)}/s`,
      met: ratio >= 10,
    });
  } else {
    checks.push({
      target: 'MultiGet of 100 keys ≥ 10× the keys/s of single Gets',
      measured: 'not measured',
      met: null,
    });
  }

  // 4. MultiGet p99 ≤ 5 ms at 1,000 calls/s.
  const mg1000 = ratePoints(results, 'multiget', 'kvs2').find((p) => p.targetRps === 1000);
  checks.push({
    target: 'MultiGet (100 keys) p99 ≤ 5 ms at 1,000 calls/s',
    measured: mg1000?.p99Ms ? `p99 ${mg1000.p99Ms.median.toFixed(2)} ms` : 'not measured',
    met: mg1000?.p99Ms ? mg1000.p99Ms.median <= 5 : null,
  });

  // 4b. Set on the embedded log at 64 ≥ 1.5× etcd Put and ≥ 0.5× Redis with appendfsync always (issue 13),
  // with the no-op servers' own ratios beside it: what the stack alone reaches doing nothing.
  const at64 = (contender: string) =>
    closed(results, 'set', contender, valueBytes).find((p) => p.concurrency === 64)?.opsPerSec?.median;
  const [setEmbedded, putEtcd, setAof] = [at64('kvs2'), at64('etcd'), at64('redis-aof')];
  const ceilings = (['noop', 'http2'] as const).flatMap((name) => {
    const rate = at64(name);
    return rate !== undefined && rate > 0 && putEtcd !== undefined && setAof !== undefined
      ? [`${name} ${(rate / putEtcd).toFixed(2)}× / ${(rate / setAof).toFixed(2)}×`]
      : [];
  });
  checks.push({
    target: 'Set on the embedded log at 64 ≥ 1.5× etcd Put and ≥ 0.5× Redis appendfsync always',
    measured:
      setEmbedded !== undefined && putEtcd !== undefined && setAof !== undefined
        ? `${fmt(setEmbedded)} calls/s = ${(setEmbedded / putEtcd).toFixed(2)}× etcd's ${fmt(putEtcd)}, ` +
          `${(setEmbedded / setAof).toFixed(2)}× Redis's ${fmt(setAof)}` +
          (ceilings.length ? ` (doing nothing: ${ceilings.join(', ')})` : '')
        : 'not measured',
    met:
      setEmbedded !== undefined && putEtcd !== undefined && setAof !== undefined
        ? setEmbedded >= 1.5 * putEtcd && setEmbedded >= 0.5 * setAof
        : null,
  });

  // 5. Set on Kafka at 64 clients ≥ etcd Put at 64.
  const setKafka = closed(results, 'set', 'kvs2-kafka', valueBytes).find((p) => p.concurrency === 64);
  const put = closed(results, 'set', 'etcd', valueBytes).find((p) => p.concurrency === 64);
  checks.push({
    target: 'Set on Kafka at 64 clients ≥ etcd Put at 64',
    measured:
      setKafka?.opsPerSec && put?.opsPerSec
        ? `${fmt(setKafka.opsPerSec.median)} vs ${fmt(put.opsPerSec.median)} calls/s = ${(setKafka.opsPerSec.median / put.opsPerSec.median).toFixed(2)}×`
        : 'not measured',
    met: setKafka?.opsPerSec && put?.opsPerSec ? setKafka.opsPerSec.median >= put.opsPerSec.median : null,
  });

  // 5b. Batched writes (Write of many mutations) on Kafka ≥ 50% of Kafka's own producer's records/s.
  const writes = results.points.filter(
    (p) => p.scenario === 'write' && p.contender === 'kvs2-kafka' && p.valueBytes === valueBytes,
  );
  const bestWrite = best(writes);
  const producerRate = results.kafkaProducer?.recordsPerSec?.median;
  const writeKeysPerSec = bestWrite?.opsPerSec ? bestWrite.opsPerSec.median * bestWrite.keysPerCall : undefined;
  checks.push({
    target: "Batched writes on Kafka ≥ 50% of Kafka's own producer's records/s",
    measured:
      writeKeysPerSec !== undefined && producerRate !== undefined && bestWrite
        ? `${fmt(writeKeysPerSec)} keys/s (Write of ${bestWrite.keysPerCall}, ${bestWrite.concurrency} in flight) vs ${fmt(producerRate)} records/s = ${((writeKeysPerSec / producerRate) * 100).toFixed(0)}%`
        : 'not measured',
    met: writeKeysPerSec !== undefined && producerRate !== undefined ? writeKeysPerSec >= 0.5 * producerRate : null,
  });

  // 6. Bootstrap ≥ 50% of kcat's records/s.
  const boot = results.bootstrap;
  checks.push({
    target: "Bootstrap ≥ 50% of kcat's records/s",
    measured:
      boot?.ratio != null && boot.kvs2.recordsPerSec && boot.kcat.recordsPerSec
        ? `${fmt(boot.kvs2.recordsPerSec.median)} vs ${fmt(boot.kcat.recordsPerSec.median)} records/s = ${(boot.ratio * 100).toFixed(0)}%`
        : 'not measured',
    met: boot?.ratio != null ? boot.ratio >= 0.5 : null,
  });

  // 6b. A new node from a peer's snapshot ≥ 2× kcat's records/s (issue 16).
  const peer = boot?.peer;
  checks.push({
    target: "Bootstrap from a peer's snapshot ≥ 2× kcat's records/s",
    measured:
      peer?.ratioToKcat != null && peer.recordsPerSec && boot?.kcat.recordsPerSec
        ? `${fmt(peer.recordsPerSec.median)} vs ${fmt(boot.kcat.recordsPerSec.median)} records/s = ${peer.ratioToKcat.toFixed(2)}× spawn → SERVING` +
          (peer.catchUpOnlyRecordsPerSec
            ? `; listening → SERVING ${fmt(peer.catchUpOnlyRecordsPerSec.median)} records/s = ${(peer.catchUpOnlyRecordsPerSec.median / boot.kcat.recordsPerSec.median).toFixed(2)}×`
            : '')
        : 'not measured',
    met: peer?.ratioToKcat != null ? peer.ratioToKcat >= 2 : null,
  });

  // 7. Memory per million keys ≤ half of Redis's RSS.
  const redisMem = results.memory.find((m) => m.system === 'redis');
  const kvs2Mem =
    results.memory.find((m) => m.system === 'kvs2-bootstrapped') ?? results.memory.find((m) => m.system === 'kvs2');
  const memOk = redisMem?.rssBytesPerMillionKeys && kvs2Mem?.rssBytesPerMillionKeys;
  checks.push({
    target: "Memory per million keys ≤ half of Redis's RSS",
    measured: memOk
      ? `${kvs2Mem.system} ${mibText(kvs2Mem.rssBytesPerMillionKeys)} vs Redis ${mibText(redisMem.rssBytesPerMillionKeys)} MiB per 1M keys = ${((kvs2Mem.rssBytesPerMillionKeys ?? 0) / (redisMem.rssBytesPerMillionKeys ?? 1)).toFixed(2)}×${anonText(kvs2Mem)}`
      : 'not measured',
    met: memOk ? (kvs2Mem.rssBytesPerMillionKeys ?? 0) <= (redisMem.rssBytesPerMillionKeys ?? 0) / 2 : null,
  });

  // 7b. A node whose store came from a peer's snapshot, after reading every key once: RSS ≤ Redis's (issue 16;
  // its store has the peer's page fill, so a peer filled in random key order makes it larger than a restore).
  const peerMem = results.memory.find((m) => m.system === 'kvs2-peer-bootstrapped');
  const peerMemOk = redisMem?.rssBytesPerMillionKeys && peerMem?.rssBytesPerMillionKeys;
  checks.push({
    target: "A node bootstrapped from a peer's snapshot, every key read once: RSS ≤ Redis's",
    measured: peerMemOk
      ? `${mibText(peerMem.rssBytesPerMillionKeys)} vs Redis ${mibText(redisMem.rssBytesPerMillionKeys)} MiB per 1M keys${anonText(peerMem)}`
      : 'not measured',
    met: peerMemOk ? (peerMem.rssBytesPerMillionKeys ?? 0) <= (redisMem.rssBytesPerMillionKeys ?? 0) : null,
  });

  // 8. Get ≥ 70% of the no-op server's calls/s: from the alternated measurement when there is one.
  const paired = (results.pairedGet ?? []).filter((p) => p.valueBytes === valueBytes && p.ratio !== null);
  if (paired.length > 0) {
    checks.push({
      target: "Get ≥ 70% of the no-op server's calls/s (alternated, at each concurrency measured)",
      measured: paired
        .map((p) => `${p.concurrency} in flight: ${((p.ratio?.median ?? 0) * 100).toFixed(0)}%`)
        .join(', '),
      met: paired.every((p) => (p.ratio?.median ?? 0) >= 0.7),
    });
    return checks;
  }
  const noopBest = best(closed(results, 'get', 'noop', valueBytes));
  checks.push({
    target: "Get ≥ 70% of the no-op server's calls/s (best of each)",
    measured:
      kvs2Best?.opsPerSec && noopBest?.opsPerSec
        ? `${fmt(kvs2Best.opsPerSec.median)} vs ${fmt(noopBest.opsPerSec.median)} calls/s = ${((kvs2Best.opsPerSec.median / noopBest.opsPerSec.median) * 100).toFixed(0)}%`
        : 'not measured',
    met:
      kvs2Best?.opsPerSec && noopBest?.opsPerSec ? kvs2Best.opsPerSec.median >= 0.7 * noopBest.opsPerSec.median : null,
  });
  return checks;
}

function mibText(bytes: number | null): string {
  return bytes === null ? '-' : (bytes / 1024 / 1024).toFixed(0);
}

/** The anonymous and file-backed parts of a kvs2 node's RSS, when recorded. */
function anonText(memory: { details: Record<string, number | string | null> }): string {
  const { rssAnonBytes, rssFileBytes } = memory.details;
  if (typeof rssAnonBytes !== 'number' || typeof rssFileBytes !== 'number') return '';
  return ` (anonymous ${mibText(rssAnonBytes)}, file-backed ${mibText(rssFileBytes)} MiB)`;
}
