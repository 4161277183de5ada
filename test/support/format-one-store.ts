import { open } from 'lmdb';

/**
 * Writes a store exactly as a kvs2 before versions (store format 1) left it: values as raw bytes in `kv`,
 * the progress in `meta` as that kvs2 saved it, and the format entry 1 (or none: older still). Written with
 * lmdb-js directly, so that the test does not depend on the current code's layout.
 */
export async function writeFormatOneStore(
  path: string,
  entries: ReadonlyArray<readonly [string | Buffer, string | Buffer]>,
  options: {
    readonly appliedOffsets: Array<[number, number]>;
    readonly logIdentity?: string;
    readonly caughtUpAt?: number | null;
    /** The format entry: 1, or undefined for a store from before format entries. */
    readonly format: 1 | undefined;
  },
): Promise<void> {
  const env = open({ path, maxDbs: 4, mapSize: 64 * 1024 ** 3 });
  try {
    const kv = env.openDB<Buffer, Buffer>({ name: 'kv', keyEncoding: 'binary', encoding: 'binary' });
    const meta = env.openDB<unknown, string>({ name: 'meta' });
    await env.transaction(() => {
      for (const [key, value] of entries) kv.put(Buffer.from(key), Buffer.from(value));
      meta.put('progress', {
        logIdentity: options.logIdentity ?? 'log-1',
        appliedOffsets: options.appliedOffsets,
        caughtUpAt: options.caughtUpAt ?? null,
      });
      if (options.format !== undefined) meta.put('format', options.format);
    });
  } finally {
    await env.close();
  }
}

/**
 * Turns a store of the current format (written by a node, stopped) back into the layout of store format 1:
 * each value without its 8-byte version, and the format entry 1 (or none), as a kvs2 before versions would
 * have left the same data.
 */
export async function rewriteAsFormatOne(path: string, format: 1 | undefined): Promise<void> {
  const env = open({ path, maxDbs: 4, mapSize: 64 * 1024 ** 3 });
  try {
    const kv = env.openDB<Buffer, Buffer>({ name: 'kv', keyEncoding: 'binary', encoding: 'binary' });
    const meta = env.openDB<unknown, string>({ name: 'meta' });
    const entries = [...kv.getRange({})].map(({ key, value }) => ({ key, value: Buffer.from(value.subarray(8)) }));
    await env.transaction(() => {
      for (const { key, value } of entries) kv.put(key, value);
      if (format === undefined) meta.remove('format');
      else meta.put('format', format);
    });
  } finally {
    await env.close();
  }
}
