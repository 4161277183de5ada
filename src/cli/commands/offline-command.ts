import { Command, Option } from 'commander';
import { Kvs2ClientError, Kvs2ClientOptionError } from '../../client/index.js';
import { describeError, isKvs2Error } from '../../errors.js';
import { EXIT_INTERNAL, EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_USAGE, exitCodeOf } from './exit-codes.js';
import { UsageError } from './usage-error.js';

export const OFFLINE_EXIT_CODES_HELP = `
Exit codes:
  0  success
  2  usage: an unknown flag, a missing argument, a file that cannot be read or written
  3  unavailable: the store could not be opened or written (permissions, disk); with --endpoint, the node
     could not be reached, broke the stream off, or is shutting down (no file is written)
  4  refused: a damaged or truncated snapshot (SNAPSHOT_INVALID), one written by a newer kvs2
     (DATA_FORMAT_UNSUPPORTED), a data dir a node is running on or that already holds a store (DATA_DIR_IN_USE);
     with --endpoint, refused by the node (no or a wrong --token, not permitted, an RPC it does not have)
  5  internal: something unexpected happened
Failures print one line on stderr: "kvs2 <command>: <code>: <message>".`;

/**
 * A command that works on files and a stopped node's data dir, not against a running node: usage errors on
 * one line of stderr as `kvs2 <label>: <message>` (exit 2); the label is the command as typed
 * (`snapshot restore`).
 */
export function offlineCommand(label: string, description: string): Command {
  const name = label.split(' ').at(-1) as string;
  return new Command(name)
    .description(description)
    .exitOverride()
    .showHelpAfterError(false)
    .configureOutput({
      outputError: (message, write) => write(`kvs2 ${label}: ${message.replace(/^error: /, '').trimEnd()}\n`),
    })
    .addHelpText('after', OFFLINE_EXIT_CODES_HELP);
}

/** --data-dir, required (no default: these commands replace or read whole stores), or KVS2_DATA_DIR. */
export function dataDirOption(): Option {
  return new Option('--data-dir <path>', "the node's data dir (its store is in <path>/store)")
    .env('KVS2_DATA_DIR')
    .makeOptionMandatory();
}

/** Runs the body and sets the exit code: its own on success, else the failure's class with one line on stderr. */
export async function runOfflineCommand(label: string, body: () => Promise<number>): Promise<void> {
  try {
    process.exitCode = await body();
  } catch (error) {
    process.exitCode = reportFailure(label, error);
  }
}

function reportFailure(label: string, error: unknown): number {
  const say = (text: string) => process.stderr.write(`kvs2 ${label}: ${text.replace(/\s*\n\s*/g, ' ')}\n`);
  if (isKvs2Error(error)) {
    say(`${error.code}: ${error.message}`);
    switch (error.code) {
      case 'SNAPSHOT_INVALID':
      case 'DATA_FORMAT_UNSUPPORTED':
      case 'DATA_DIR_IN_USE':
      case 'INVALID_ARGUMENT':
        return EXIT_REFUSED;
      case 'STORE_UNAVAILABLE':
      case 'LOG_UNAVAILABLE':
        return EXIT_UNAVAILABLE;
      default:
        return EXIT_INTERNAL;
    }
  }
  if (error instanceof Kvs2ClientError) {
    // From a running node (snapshot save --endpoint): classed as the client commands class it.
    say(`${error.kvs2Code}: ${error.details.replace(/\s*(Resolution note:)?\s*$/, '')}`);
    return exitCodeOf(error);
  }
  if (error instanceof UsageError || error instanceof Kvs2ClientOptionError) {
    say(error.message);
    return EXIT_USAGE;
  }
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT' || code === 'EACCES' || code === 'EISDIR' || code === 'ENOTDIR' || code === 'EEXIST') {
    say(describeError(error));
    return EXIT_USAGE;
  }
  say(`internal error: ${describeError(error)}`);
  return EXIT_INTERNAL;
}
