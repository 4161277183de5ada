import { type Command, InvalidArgumentError, Option } from 'commander';
import { Kvs2Client } from '../../client/index.js';
import { snapshotDataDir } from '../../snapshot/data-dir-snapshot.js';
import type { SnapshotMetadata } from '../../snapshot/snapshot-format.js';
import { verifySnapshot } from '../../snapshot/snapshot-install.js';
import { parseDuration } from './duration.js';
import { EXIT_OK } from './exit-codes.js';
import { offlineCommand, runOfflineCommand } from './offline-command.js';
import { writeCheckedOutput, writeOutput } from './snapshot-files.js';
import { snapshotLines } from './snapshot-report.js';
import { humanBytes } from './status-format.js';
import { tlsOptionOf, withTlsFlags } from './tls-flags.js';
import { UsageError } from './usage-error.js';

/**
 * The pace a backup asks of a running node by default: at 4 MiB/s a node serving Get at 64 in flight kept
 * 0.93 of its calls/s (docs/benchmarks.md, issue 16); unpaced it kept 0.56. A 1M-key store of 100-byte values
 * (112 MiB) then takes ~28 s.
 */
const DEFAULT_MAX_RATE_MIB = 4;

/**
 * How long a node may send nothing before a backup gives up on it: a silent node (hung, or cut off without a
 * reset) would otherwise hold the command forever. As a bootstrapping node's --bootstrap-stall-timeout-ms and
 * a serving node's --snapshot-send-stall-timeout-ms: it covers the node's copy of its store before the first
 * byte of a store image (~1 s per GB).
 */
const DEFAULT_STALL_TIMEOUT_MS = 60_000;

function parseRate(text: string): number {
  const rate = /^\d+(?:\.\d+)?$/.test(text.trim()) ? Number(text) : Number.NaN;
  if (!Number.isFinite(rate) || rate < 0 || (rate > 0 && rate < 1 / 16) || rate > 1024 * 1024) {
    throw new InvalidArgumentError('give MiB per second as a number, such as 4 or 0.5, at least 0.0625 (0: no limit).');
  }
  return rate;
}

interface SaveFlags {
  readonly maxRate: number;
  readonly dataDir?: string;
  readonly endpoint?: string;
  readonly timeout?: number;
  readonly stallTimeout: number;
  readonly token?: string;
}

/**
 * `kvs2 snapshot save FILE (--endpoint host:port | --data-dir DIR)`: a running node's snapshot over its API
 * (the Snapshot RPC), or a stopped node's from its files. Either way FILE appears only whole: written
 * beside it, checked, synced, renamed.
 */
export function snapshotSaveCommand(): Command {
  const command = offlineCommand(
    'snapshot save',
    "Write a snapshot of a node's store to FILE (- for stdout), atomically: of a running node with " +
      "--endpoint (it keeps serving meanwhile), or of a stopped node's data dir with --data-dir",
  )
    .argument('<file>', 'where to write the snapshot; - for stdout')
    .addOption(
      new Option('--endpoint <host:port>', 'take the snapshot of the node running there, over its API').env(
        'KVS2_ENDPOINT',
      ),
    )
    .addOption(
      new Option('--data-dir <path>', "take the snapshot of a stopped node's store in <path>/store").env(
        'KVS2_DATA_DIR',
      ),
    )
    .addOption(
      new Option(
        '--timeout <duration>',
        'with --endpoint: give up if the whole snapshot has not arrived by then (500ms, 5s, 2m); default: no limit',
      ).argParser(parseDuration),
    )
    .addOption(
      new Option(
        '--stall-timeout <duration>',
        'with --endpoint: give up if the node sends nothing for this long (before its first byte or between two), however long the whole snapshot takes',
      )
        .argParser(parseDuration)
        .default(DEFAULT_STALL_TIMEOUT_MS, '60s'),
    )
    .addOption(
      new Option(
        '--token <token>',
        'with --endpoint: bearer token for a node run with --auth-file; it needs read on every key',
      ).env('KVS2_CLIENT_TOKEN'),
    );
  command.addOption(
    new Option(
      '--max-rate <MiB/s>',
      "with --endpoint: the node sends at most this many MiB a second (0: no limit). Encoding a snapshot runs on the thread that serves the node's reads: unpaced, a busy node loses about half its Get throughput while it streams",
    )
      .argParser(parseRate)
      .default(DEFAULT_MAX_RATE_MIB, String(DEFAULT_MAX_RATE_MIB)),
  );
  withTlsFlags(command);
  return command.action((file: string, flags: SaveFlags, self: Command) =>
    runOfflineCommand('snapshot save', async () => {
      const from = sourceOf(self, flags);
      const report = file === '-' ? process.stderr : process.stdout;
      if (from.kind === 'data-dir') {
        const source = await snapshotDataDir(from.dataDir);
        try {
          const bytes = await writeOutput(file, source.encoder);
          report.write(saved(from.dataDir, file, bytes, source.encoder.metadata));
        } finally {
          await source.close();
        }
        return EXIT_OK;
      }
      const tls = tlsOptionOf(self);
      const client = new Kvs2Client(from.endpoint, {
        ...(tls === undefined ? {} : { tls }),
        ...(flags.token === undefined ? {} : { token: flags.token }),
      });
      try {
        const chunks = client.snapshot({
          maxBytesPerSecond: Math.round(flags.maxRate * 1024 * 1024),
          stallTimeoutMs: flags.stallTimeout,
          ...(flags.timeout === undefined ? {} : { timeoutMs: flags.timeout }),
        });
        const { bytes, checked } = await writeCheckedOutput(file, chunks, (written) => verifySnapshot(written));
        report.write(
          `${saved(from.endpoint, file, bytes, checked.metadata)}verified: ${checked.keys} entries, sha256 ${checked.sha256}\n`,
        );
      } finally {
        client.close();
      }
      return EXIT_OK;
    }),
  );
}

/**
 * Exactly one of --endpoint and --data-dir. A flag on the command line wins over the other one's variable,
 * so that KVS2_ENDPOINT set for the client commands does not get in the way of --data-dir.
 */
function sourceOf(
  command: Command,
  flags: SaveFlags,
): { kind: 'endpoint'; endpoint: string } | { kind: 'data-dir'; dataDir: string } {
  const typed = (name: string): boolean => command.getOptionValueSource(name) === 'cli';
  let pick: 'endpoint' | 'data-dir';
  if (typed('endpoint') && typed('dataDir')) {
    throw new UsageError('give either --endpoint (a running node) or --data-dir (a stopped one), not both');
  } else if (typed('endpoint') || typed('dataDir')) {
    pick = typed('endpoint') ? 'endpoint' : 'data-dir';
  } else if (flags.endpoint !== undefined && flags.dataDir !== undefined) {
    throw new UsageError('KVS2_ENDPOINT and KVS2_DATA_DIR are both set: say which with --endpoint or --data-dir');
  } else if (flags.endpoint !== undefined || flags.dataDir !== undefined) {
    pick = flags.endpoint !== undefined ? 'endpoint' : 'data-dir';
  } else {
    throw new UsageError('give --endpoint host:port (a running node) or --data-dir (a stopped one)');
  }
  if (pick === 'endpoint') return { kind: 'endpoint', endpoint: flags.endpoint as string };
  // Only flags typed: their variables may well be set for the client commands.
  const misplaced = CLIENT_FLAGS.find(typed);
  if (misplaced !== undefined) throw new UsageError(`--${kebab(misplaced)} goes with --endpoint, not --data-dir`);
  return { kind: 'data-dir', dataDir: flags.dataDir as string };
}

const CLIENT_FLAGS = ['timeout', 'stallTimeout', 'token', 'tls', 'tlsCa', 'tlsCert', 'tlsKey', 'tlsServerName'];

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
}

function saved(source: string, file: string, bytes: number, metadata: SnapshotMetadata): string {
  return (
    `saved a snapshot of ${source} to ${file === '-' ? 'stdout' : file} (${humanBytes(bytes)}, ${bytes} bytes)\n` +
    snapshotLines(metadata)
  );
}
