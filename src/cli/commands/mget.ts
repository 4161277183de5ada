import type { Command } from 'commander';
import { ReadStatus } from '../../client/index.js';
import { formatBytes, parseBytes, textBytes } from './bytes-encoding.js';
import { clientCommand, runClientCommand } from './client-command.js';
import { EXIT_OK } from './exit-codes.js';
import { readOptionsOf, withReadOptions } from './read-options.js';

const TAB = Buffer.from('\t');

/**
 * `kvs2 mget KEY...`: `key<TAB>value` per key found, in the order asked (keys not found are left out);
 * json: {key, found, value, version} per key asked ({key, found, version: 0} for one not found).
 */
export function mgetCommand(): Command {
  return withReadOptions(clientCommand('mget', 'Print the values of several keys, read at one point of the log'))
    .argument('<keys...>')
    .action((keys: string[], _flags: unknown, command: Command) =>
      runClientCommand(command, async ({ client, out, encoding }) => {
        const keyBytes = keys.map((key, i) => parseBytes(key, encoding, `key ${i + 1}`));
        const reply = await client.multiGet({ keys: keyBytes, ...readOptionsOf(command) });
        for (const part of reply.parts) {
          const found = part.status === ReadStatus.OK;
          if (out.json) {
            const key = formatBytes(part.key, encoding);
            out.object(
              found
                ? { key, found, value: formatBytes(part.data, encoding), version: part.version }
                : { key, found, version: 0 },
            );
          } else if (found) {
            out.line(textBytes(part.key, encoding), TAB, textBytes(part.data, encoding));
          }
        }
        return EXIT_OK;
      }),
    );
}
