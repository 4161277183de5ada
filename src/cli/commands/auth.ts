import { Command } from 'commander';
import { hashToken } from '../../auth/token-hash.js';
import { EXIT_USAGE } from './exit-codes.js';
import { readStdin } from './stdin.js';

/**
 * `kvs2 auth hash-token`: reads a bearer token on stdin (never from the command line, where ps shows it)
 * and prints its scrypt hash for the "tokens" of --auth-file.
 */
export function authCommand(): Command {
  const auth = new Command('auth').description('Helpers for --auth-file').exitOverride();
  auth
    .command('hash-token')
    .description(
      'Read a bearer token on stdin (a trailing newline is dropped) and print its scrypt hash for the "tokens" of --auth-file',
    )
    .exitOverride()
    .action(async () => {
      const token = (await readStdin()).toString('utf8').replace(/\r?\n$/, '');
      if (!/^\S+$/.test(token)) {
        process.stderr.write('kvs2 auth hash-token: the token must be non-empty and without whitespace\n');
        process.exitCode = EXIT_USAGE;
        return;
      }
      process.stdout.write(`${await hashToken(token)}\n`);
    });
  return auth;
}
