import type { Command } from 'commander';
import { compactDataDir } from '../../snapshot/data-dir-snapshot.js';
import { EXIT_OK } from './exit-codes.js';
import { dataDirOption, offlineCommand, runOfflineCommand } from './offline-command.js';
import { humanBytes } from './status-format.js';

/**
 * `kvs2 compact`: rewrites a stopped node's store in key order with full pages, giving back the disk and
 * memory a store filled in random order holds in half-empty and free pages.
 */
export function compactCommand(): Command {
  return offlineCommand(
    'compact',
    "Rewrite a stopped node's store in key order (full pages, no free pages); keys and positions stay as they are",
  )
    .addOption(dataDirOption())
    .action((flags: { dataDir: string }) =>
      runOfflineCommand('compact', async () => {
        const compacted = await compactDataDir(flags.dataDir);
        process.stdout.write(
          `compacted ${compacted.keys} keys in ${flags.dataDir}: data.mdb ${humanBytes(compacted.bytesBefore)} → ` +
            `${humanBytes(compacted.bytesAfter)} (${compacted.bytesBefore} → ${compacted.bytesAfter} bytes)\n`,
        );
        return EXIT_OK;
      }),
    );
}
