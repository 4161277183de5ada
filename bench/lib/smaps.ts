import { readdirSync, readFileSync } from 'node:fs';

/**
 * A process's resident memory by what holds it, from /proc/<pid>/smaps: which mapping a page belongs to is
 * all the kernel tells, so anonymous mappings are told apart by their shape (glibc's, below). Bytes.
 */
export interface ResidentBreakdown {
  readonly rss: number;
  /** File-backed: the `node` executable, shared libraries and native addons, LMDB's data.mdb, other files. */
  readonly nodeBinary: number;
  readonly libraries: number;
  readonly dataMdb: number;
  readonly otherFiles: number;
  /** Anonymous: the main malloc arena (brk), glibc's per-thread arenas, thread stacks, the rest (V8's heap among it). */
  readonly brkHeap: number;
  readonly mallocArenas: number;
  /** How many thread arenas exist (each reserves 64 MiB of address space; only touched pages count). */
  readonly mallocArenaCount: number;
  readonly threadStacks: number;
  readonly otherAnonymous: number;
  /** Thread names (comm) and how many of each. */
  readonly threads: Readonly<Record<string, number>>;
}

interface Mapping {
  readonly start: bigint;
  readonly end: bigint;
  readonly perms: string;
  readonly path: string;
  rss: number;
}

/** glibc's non-main arenas are "heaps" of HEAP_MAX_SIZE (64 MiB on 64-bit), aligned to their size. */
const ARENA_HEAP_BYTES = 64n * 1024n * 1024n;

export function residentBreakdown(pid: number): ResidentBreakdown {
  const maps = parseSmaps(readFileSync(`/proc/${pid}/smaps`, 'utf8'));
  const parts = {
    nodeBinary: 0,
    libraries: 0,
    dataMdb: 0,
    otherFiles: 0,
    brkHeap: 0,
    mallocArenas: 0,
    mallocArenaCount: 0,
    threadStacks: 0,
    otherAnonymous: 0,
  };
  let rss = 0;
  maps.forEach((m, i) => {
    rss += m.rss;
    const previous = maps[i - 1];
    const next = maps[i + 1];
    if (m.path === '[heap]') parts.brkHeap += m.rss;
    else if (m.path.endsWith('/bin/node')) parts.nodeBinary += m.rss;
    else if (/\.so(\.[\d.]+)?$/.test(m.path) || m.path.endsWith('.node')) parts.libraries += m.rss;
    else if (m.path.endsWith('/data.mdb')) parts.dataMdb += m.rss;
    else if (m.path.startsWith('/')) parts.otherFiles += m.rss;
    else if (m.path === '' && m.perms.startsWith('rw') && m.start % ARENA_HEAP_BYTES === 0n && isArenaTail(m, next)) {
      parts.mallocArenas += m.rss;
      parts.mallocArenaCount += 1;
    } else if (m.path === '[stack]' || isThreadStack(m, previous)) parts.threadStacks += m.rss;
    else parts.otherAnonymous += m.rss;
  });
  return { rss, ...parts, threads: threadNames(pid) };
}

/** An arena heap is read-write up to what it uses and inaccessible (---p) to the end of its 64 MiB. */
function isArenaTail(m: Mapping, next: Mapping | undefined): boolean {
  if (m.end - m.start === ARENA_HEAP_BYTES) return true;
  return (
    next !== undefined &&
    next.start === m.end &&
    next.perms.startsWith('---') &&
    next.end === m.start + ARENA_HEAP_BYTES
  );
}

/** A pthread stack: a read-write anonymous mapping right above its guard page(s) (---p, at most 64 KiB). */
function isThreadStack(m: Mapping, previous: Mapping | undefined): boolean {
  return (
    m.path === '' &&
    m.perms.startsWith('rw') &&
    previous !== undefined &&
    previous.path === '' &&
    previous.end === m.start &&
    previous.perms.startsWith('---') &&
    previous.end - previous.start <= 64n * 1024n &&
    m.end - m.start <= 16n * 1024n * 1024n
  );
}

function parseSmaps(text: string): Mapping[] {
  const maps: Mapping[] = [];
  let current: Mapping | undefined;
  for (const line of text.split('\n')) {
    const header = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (header) {
      current = {
        start: BigInt(`0x${header[1]}`),
        end: BigInt(`0x${header[2]}`),
        perms: header[3] as string,
        path: (header[4] as string).trim(),
        rss: 0,
      };
      maps.push(current);
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss && current) current.rss = Number(rss[1]) * 1024;
  }
  return maps;
}

function threadNames(pid: number): Record<string, number> {
  const names: Record<string, number> = {};
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      const name = readFileSync(`/proc/${pid}/task/${task}/comm`, 'utf8').trim();
      names[name] = (names[name] ?? 0) + 1;
    } catch {
      // The thread ended meanwhile.
    }
  }
  return names;
}
