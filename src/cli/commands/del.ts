import type { Command } from 'commander';
import { formatToken, parseBytes } from './bytes-encoding.js';
import { clientCommand, runClientCommand } from './client-command.js';
import { EXIT_OK } from './exit-codes.js';

/** `kvs2 del KEY`: prints the delete's token (deleting a key that is not there is not an error). */
export function delCommand(): Command {
  return clientCommand('del', "Delete a key and print the delete's token (for --after)")
    .argument('<key>')
    .option('--wait', 'answer only once this node has applied the delete, so its reads see it')
    .action((key: string, _flags: unknown, command: Command) =>
      runClientCommand(command, async ({ client, out, encoding }) => {
        const { wait } = command.opts<{ wait?: true }>();
        const reply = await client.delete({ key: parseBytes(key, encoding, 'key'), waitForApply: wait === true });
        if (out.json) out.object({ token: formatToken(reply.token) });
        else out.line(formatToken(reply.token));
        return EXIT_OK;
      }),
    );
}
