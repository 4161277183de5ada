import { Command, Option } from 'commander';
import { installSnapshot, verifySnapshot } from '../../snapshot/snapshot-install.js';
import { EXIT_OK } from './exit-codes.js';
import { dataDirOption, offlineCommand, runOfflineCommand } from './offline-command.js';
import { openInput } from './snapshot-files.js';
import { snapshotLines as lines, metadataObject } from './snapshot-report.js';
import { snapshotSaveCommand } from './snapshot-save.js';
import { humanBytes } from './status-format.js';

/**
 * `kvs2 snapshot save|restore|inspect`: a node's store as one file (docs/snapshot-format.md), for backups
 * and for moving a store elsewhere. These work on files and a stopped node's data dir; `save --endpoint`
 * takes the snapshot of a running node over its API.
 */
export function snapshotCommand(): Command {
  const snapshot = new Command('snapshot')
    .description(
      "Save a node's store to a file (from a running node, or a stopped one's data dir), check one, or restore one into a data dir",
    )
    .exitOverride();

  snapshot.addCommand(snapshotSaveCommand());

  snapshot.addCommand(
    offlineCommand(
      'snapshot restore',
      'Verify the snapshot in FILE (- for stdin) and install it as the store of a data dir; a node started ' +
        "there resumes from the snapshot's positions. The data dir is left as it was on any failure.",
    )
      .argument('<file>', 'the snapshot; - for stdin')
      .addOption(dataDirOption())
      .addOption(new Option('--force', 'replace the store (and embedded log) the data dir already holds'))
      .action((file: string, flags: { dataDir: string; force?: true }) =>
        runOfflineCommand('snapshot restore', async () => {
          const input = await openInput(file);
          try {
            const installed = await installSnapshot(input.chunks, {
              dataDir: flags.dataDir,
              force: flags.force === true,
            });
            const continues =
              installed.metadata.logKind === 'embedded'
                ? `; its embedded log continues at offset ${installed.metadata.appliedOffsets.get(0) ?? 0}`
                : installed.metadata.logKind === 'kafka'
                  ? '; a node started on it reads the topic from these positions'
                  : '';
            process.stdout.write(
              `restored ${installed.keys} keys into ${flags.dataDir}` +
                `${installed.replaced ? ', replacing what it held' : ''} ` +
                `(data.mdb ${humanBytes(installed.bytesOnDisk)})${continues}\n${lines(installed.metadata)}`,
            );
          } finally {
            await input.close();
          }
          return EXIT_OK;
        }),
      ),
  );

  snapshot.addCommand(
    offlineCommand('snapshot inspect', 'Print the metadata of the snapshot in FILE (- for stdin) and verify all of it')
      .argument('<file>', 'the snapshot; - for stdin')
      .addOption(new Option('-o, --output <format>', 'text, or json').choices(['text', 'json']).default('text'))
      .action((file: string, flags: { output: 'text' | 'json' }) =>
        runOfflineCommand('snapshot inspect', async () => {
          const input = await openInput(file);
          try {
            let bytes = 0;
            const counted = (async function* () {
              for await (const chunk of input.chunks) {
                bytes += chunk.length;
                yield chunk;
              }
            })();
            const checked = await verifySnapshot(counted, (metadata) => {
              // Printed before the rest is read, so a damaged file still shows what it claims to be.
              if (flags.output === 'text') process.stdout.write(lines(metadata));
            });
            if (flags.output === 'json') {
              process.stdout.write(
                `${JSON.stringify({ ...metadataObject(checked.metadata), bytes, sha256: checked.sha256, verified: true })}\n`,
              );
            } else {
              process.stdout.write(
                `verified: ${checked.keys} entries, ${humanBytes(bytes)} (${bytes} bytes), sha256 ${checked.sha256}\n`,
              );
            }
          } finally {
            await input.close();
          }
          return EXIT_OK;
        }),
      ),
  );
  return snapshot;
}
