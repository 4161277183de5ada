/**
 * Loaded into a node under measurement with `--import` (bench/node-memory.ts): what V8 and the module loader
 * say of the process's memory, written every second as JSON to the file named by KVS2_BENCH_MEMORY_PROBE,
 * read by the benchmark from outside (no signal, no inspector: the node runs as it would otherwise). Costs
 * the node a timer and a few hundred KiB; the benchmark's RSS comparisons run without it.
 */
import { writeFileSync } from 'node:fs';
import { registerHooks } from 'node:module';
import { getHeapCodeStatistics, getHeapSpaceStatistics, getHeapStatistics } from 'node:v8';

const out = process.env.KVS2_BENCH_MEMORY_PROBE;
const modules = new Set<string>();
registerHooks({
  load(url, context, nextLoad) {
    modules.add(url);
    return nextLoad(url, context);
  },
});

/** Loaded files by package (node_modules/<name>, or kvs2's own dist/ tree), node: built-ins left out. */
function modulesByPackage(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const url of modules) {
    if (!url.startsWith('file:')) continue;
    const inPackage = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
    const name = inPackage ? (inPackage[1] as string) : 'kvs2';
    counts[name] = (counts[name] ?? 0) + 1;
  }
  return counts;
}

if (out !== undefined) {
  const write = (): void => {
    const heap = getHeapStatistics();
    writeFileSync(
      out,
      JSON.stringify({
        memoryUsage: process.memoryUsage(),
        heap: {
          totalPhysical: heap.total_physical_size,
          total: heap.total_heap_size,
          used: heap.used_heap_size,
          malloced: heap.malloced_memory,
          peakMalloced: heap.peak_malloced_memory,
          external: heap.external_memory,
        },
        spaces: Object.fromEntries(
          getHeapSpaceStatistics().map((s) => [
            s.space_name,
            { physical: s.physical_space_size, used: s.space_used_size },
          ]),
        ),
        code: getHeapCodeStatistics(),
        modules: modulesByPackage(),
      }),
    );
  };
  setInterval(write, 1_000).unref();
}
