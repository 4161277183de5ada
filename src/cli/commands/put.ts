import type { Command } from 'commander';
import { formatToken, parseBytes } from './bytes-encoding.js';
import { clientCommand, runClientCommand } from './client-command.js';
import { EXIT_OK } from './exit-codes.js';
import { readStdin } from './stdin.js';

/** `kvs2 put KEY VALUE` (`-`: the value is stdin): prints the write's token, for `--after`. */
export function putCommand(): Command {
  return clientCommand('put', "Write a key's value and print the write's token (for --after)")
    .argument('<key>')
    .argument('<value>', 'the value, or - to read it from stdin (as is: bytes, trailing newline included)')
    .option('--wait', 'answer only once this node has applied the write, so its reads see it')
    .action((key: string, value: string, _flags: unknown, command: Command) =>
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
        const reply = await client.set({ key: keyBytes, value: valueBytes, waitForApply: wait === true });
        if (out.json) out.object({ token: formatToken(reply.token) });
        else out.line(formatToken(reply.token));
        return EXIT_OK;
      }),
    );
}
