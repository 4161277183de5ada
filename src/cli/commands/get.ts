import type { Command } from 'commander';
import { ReadStatus } from '../../client/index.js';
import { formatBytes, formatToken, parseBytes, textBytes } from './bytes-encoding.js';
import { clientCommand, runClientCommand } from './client-command.js';
import { EXIT_NOT_FOUND, EXIT_OK } from './exit-codes.js';
import { readOptionsOf, withReadOptions } from './read-options.js';

/** `kvs2 get KEY`: the value (text), or {key, value, version, token} (json); exit 1 when the key is not there. */
export function getCommand(): Command {
  return withReadOptions(clientCommand('get', 'Print the value of a key; exit 1 if there is none'))
    .argument('<key>')
    .action((key: string, _flags: unknown, command: Command) =>
      runClientCommand(command, async ({ client, out, encoding }) => {
        const reply = await client.get({ key: parseBytes(key, encoding, 'key'), ...readOptionsOf(command) });
        if (reply.status !== ReadStatus.OK) {
          process.stderr.write(`kvs2 get: not found: ${key}\n`);
          return EXIT_NOT_FOUND;
        }
        if (out.json) {
          out.object({
            key,
            value: formatBytes(reply.data, encoding),
            version: reply.version,
            token: formatToken(reply.token),
          });
        } else out.line(textBytes(reply.data, encoding));
        return EXIT_OK;
      }),
    );
}
