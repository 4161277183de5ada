import { type Command, InvalidArgumentError, Option } from 'commander';
import type { ScanRequest } from '../../client/index.js';
import { type BytesEncoding, formatBytes, parseBytes, textBytes } from './bytes-encoding.js';
import { clientCommand, runClientCommand } from './client-command.js';
import { EXIT_OK } from './exit-codes.js';
import { readOptionsOf, withReadOptions } from './read-options.js';
import { UsageError } from './usage-error.js';

const TAB = Buffer.from('\t');
const EMPTY = Buffer.alloc(0);
const SMALL_PAGE = 100;

interface ScanFlags {
  readonly start?: string;
  readonly end?: string;
  readonly limit?: number;
  readonly keysOnly?: true;
}

/**
 * `kvs2 scan [PREFIX]` or `--start/--end`: keys in order, `key<TAB>value` per line (json: {key, value,
 * version} per line, {key, version} with --keys-only), following the node's pages until the range or --limit is exhausted.
 */
export function scanCommand(): Command {
  return withReadOptions(clientCommand('scan', 'Print keys and values in key order, by prefix or range'))
    .argument('[prefix]', 'keys starting with this (default: every key)')
    .option('--start <key>', 'the first key of the range (inclusive); instead of a prefix')
    .option('--end <key>', 'the end of the range (exclusive; default: no end); instead of a prefix')
    .addOption(new Option('--limit <n>', 'print at most this many keys').argParser(positiveInteger))
    .option('--keys-only', 'print only the keys')
    .action((prefix: string | undefined, _flags: unknown, command: Command) =>
      runClientCommand(command, async ({ client, out, encoding }) => {
        const flags = command.opts<ScanFlags>();
        let request: ScanRequest = { ...scanRange(prefix, flags, encoding), ...readOptionsOf(command) };
        let left = flags.limit ?? Number.POSITIVE_INFINITY;
        while (left > 0) {
          const page = await client.scan({ ...request, limit: pageLimit(left) });
          for (const item of page.items.slice(0, Math.min(page.items.length, left))) {
            if (out.json) {
              const key = formatBytes(item.key, encoding);
              out.object(
                flags.keysOnly
                  ? { key, version: item.version }
                  : { key, value: formatBytes(item.value, encoding), version: item.version },
              );
            } else if (flags.keysOnly) {
              out.line(textBytes(item.key, encoding));
            } else {
              out.line(textBytes(item.key, encoding), TAB, textBytes(item.value, encoding));
            }
          }
          left -= page.items.length;
          if (page.continuation.length === 0) break;
          request = { ...request, continuation: page.continuation };
        }
        return EXIT_OK;
      }),
    );
}

function scanRange(prefix: string | undefined, flags: ScanFlags, encoding: BytesEncoding): ScanRequest {
  if (prefix !== undefined && (flags.start !== undefined || flags.end !== undefined)) {
    throw new UsageError('give a prefix or --start/--end, not both');
  }
  return {
    prefix: prefix === undefined ? EMPTY : parseBytes(prefix, encoding, 'prefix'),
    start: flags.start === undefined ? EMPTY : parseBytes(flags.start, encoding, '--start'),
    end: flags.end === undefined ? EMPTY : parseBytes(flags.end, encoding, '--end'),
    limit: 0,
    keysOnly: flags.keysOnly === true,
    continuation: EMPTY,
    consistency: 0,
    after: [],
  };
}

/**
 * The page size to ask for: what is left of --limit when that is small, else 0, the node's default page
 * (at most its --max-batch-keys, which a larger ask would exceed and be refused for).
 */
function pageLimit(left: number): number {
  return left <= SMALL_PAGE ? left : 0;
}

function positiveInteger(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('give a whole number of at least 1.');
  return n;
}
