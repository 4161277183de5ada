import type { Command } from 'commander';
import { clientCommand, runClientCommand } from './client-command.js';
import { EXIT_OK } from './exit-codes.js';
import { statusLines, statusObject } from './status-format.js';

/** `kvs2 status`: the node's state, version, log, lag per partition, keys, store size, last caught up. */
export function statusCommand(): Command {
  return clientCommand(
    'status',
    "Print the node's state, version, log, lag per partition, keys, store size and when it last caught up",
  ).action((_flags: unknown, command: Command) =>
    runClientCommand(command, async ({ client, out }) => {
      const reply = await client.status();
      if (out.json) out.object(statusObject(reply));
      else for (const line of statusLines(reply, Date.now())) out.line(line);
      return EXIT_OK;
    }),
  );
}
