import type { Command } from 'commander';
import { parseBytes } from './bytes-encoding.js';
import { clientCommand, runClientCommand } from './client-command.js';
import { conditionOfFlags, printWriteReply, withConditionFlags } from './condition-flags.js';
import { readStdin } from './stdin.js';

/**
 * `kvs2 put KEY VALUE` (`-`: the value is stdin): prints the write's token, for `--after`; with a condition
 * (--if-version, --if-absent, --if-present), `applied` or `conflict` and the version too.
 */
export function putCommand(): Command {
  const command = clientCommand('put', "Write a key's value and print the write's token (for --after)")
    .argument('<key>')
    .argument('<value>', 'the value, or - to read it from stdin (as is: bytes, trailing newline included)')
    .option('--wait', 'answer only once this node has applied the write, so its reads see it');
  return withConditionFlags(command, 'write').action((key: string, value: string, _flags: unknown, command: Command) =>
    runClientCommand(command, async ({ client, out, encoding }) => {
      const { wait } = command.opts<{ wait?: true }>();
      const keyBytes = parseBytes(key, encoding, 'key');
      // Stdin is raw bytes with the default encoding; hex or base64 text (surrounding whitespace ignored) otherwise.
      const stdin = value === '-' ? await readStdin() : undefined;
      const valueBytes =
        stdin === undefined
          ? parseBytes(value, encoding, 'value')
          : encoding === 'utf8'
            ? stdin
            : parseBytes(stdin.toString('latin1'), encoding, 'value from stdin');
      const condition = conditionOfFlags(command);
      const reply = await client.set({ key: keyBytes, value: valueBytes, waitForApply: wait === true, condition });
      return printWriteReply(out, reply, condition !== undefined);
    }),
  );
}
