import type { Command } from 'commander';
import { parseBytes } from './bytes-encoding.js';
import { clientCommand, runClientCommand } from './client-command.js';
import { conditionOfFlags, printWriteReply, withConditionFlags } from './condition-flags.js';

/**
 * `kvs2 del KEY`: prints the delete's token (deleting a key that is not there is not an error); with a
 * condition, `applied` or `conflict` and the version too.
 */
export function delCommand(): Command {
  const command = clientCommand('del', "Delete a key and print the delete's token (for --after)")
    .argument('<key>')
    .option('--wait', 'answer only once this node has applied the delete, so its reads see it');
  return withConditionFlags(command, 'delete').action((key: string, _flags: unknown, command: Command) =>
    runClientCommand(command, async ({ client, out, encoding }) => {
      const { wait } = command.opts<{ wait?: true }>();
      const condition = conditionOfFlags(command);
      const reply = await client.delete({
        key: parseBytes(key, encoding, 'key'),
        waitForApply: wait === true,
        condition,
      });
      return printWriteReply(out, reply, condition !== undefined);
    }),
  );
}
