import { Command, Option } from 'commander';
import { Kvs2Client, Kvs2ClientError, Kvs2ClientOptionError } from '../../client/index.js';
import type { BytesEncoding } from './bytes-encoding.js';
import { parseDuration } from './duration.js';
import { EXIT_INTERNAL, EXIT_USAGE, exitCodeOf } from './exit-codes.js';
import { Output, type OutputFormat } from './output.js';
import { tlsOptionOf, withTlsFlags } from './tls-flags.js';
import { UsageError } from './usage-error.js';

export const DEFAULT_ENDPOINT = '127.0.0.1:50051';

/** The flags every client command takes, as commander parsed them. */
interface ConnectionFlags {
  readonly endpoint: string;
  readonly timeout: number;
  readonly output: OutputFormat;
  readonly hex?: true;
  readonly base64?: true;
  readonly token?: string;
}

/** What a command's body gets: a client for --endpoint, the output, and the encoding of keys and values. */
export interface CommandContext {
  readonly client: Kvs2Client;
  readonly out: Output;
  readonly encoding: BytesEncoding;
}

/**
 * A client command with the flags all of them share (--endpoint, --timeout, --output, --hex, --base64, --tls-*),
 * reporting a usage error on one line of stderr as `kvs2 <name>: <message>` (exit 2).
 */
export function clientCommand(name: string, description: string): Command {
  const command = new Command(name)
    .description(description)
    .exitOverride()
    .showHelpAfterError(false)
    .configureOutput({
      outputError: (message, write) => write(`kvs2 ${name}: ${message.replace(/^error: /, '').trimEnd()}\n`),
    })
    .addOption(
      new Option('--endpoint <host:port>', 'the node to talk to').env('KVS2_ENDPOINT').default(DEFAULT_ENDPOINT),
    )
    .addOption(
      new Option('--timeout <duration>', 'deadline of each call (500ms, 5s, 2m; a bare number is seconds)')
        .argParser(parseDuration)
        .default(10_000, '10s'),
    )
    .addOption(
      new Option('-o, --output <format>', 'text, or json (one JSON object per line)')
        .choices(['text', 'json'])
        .default('text'),
    )
    .addOption(
      new Option('--hex', 'keys and values are hex, on the command line and in the output').conflicts('base64'),
    )
    .addOption(new Option('--base64', 'keys and values are base64, on the command line and in the output'))
    .addOption(
      new Option(
        '--token <token>',
        'bearer token for a node run with --auth-file (prefer the variable: flags show in ps)',
      ).env('KVS2_CLIENT_TOKEN'),
    );
  return withTlsFlags(command);
}

/**
 * Runs a command's body against the node and sets the exit code: the body's on success, else the failure's
 * class (exit-codes.ts) with one line on stderr. The client is closed in every case.
 */
export async function runClientCommand(
  command: Command,
  body: (context: CommandContext) => Promise<number>,
): Promise<void> {
  const flags = command.opts<ConnectionFlags>();
  let client: Kvs2Client | undefined;
  try {
    const tls = tlsOptionOf(command);
    client = new Kvs2Client(flags.endpoint, {
      timeoutMs: flags.timeout,
      ...(tls === undefined ? {} : { tls }),
      ...(flags.token === undefined ? {} : { token: flags.token }),
    });
    const encoding: BytesEncoding = flags.hex ? 'hex' : flags.base64 ? 'base64' : 'utf8';
    process.exitCode = await body({ client, out: new Output(flags.output), encoding });
  } catch (error) {
    process.exitCode = reportFailure(command.name(), error);
  } finally {
    client?.close();
  }
}

function reportFailure(name: string, error: unknown): number {
  // One line, without grpc-js's empty "Resolution note:" tail.
  const say = (text: string) =>
    process.stderr.write(`kvs2 ${name}: ${text.replace(/\s*\n\s*/g, ' ').replace(/\s*(Resolution note:)?\s*$/, '')}\n`);
  if (error instanceof Kvs2ClientError) {
    say(`${error.kvs2Code}: ${error.details}`);
    return exitCodeOf(error);
  }
  if (error instanceof UsageError || error instanceof Kvs2ClientOptionError) {
    say(error.message);
    return EXIT_USAGE;
  }
  say(`internal error: ${error instanceof Error ? error.message : String(error)}`);
  return EXIT_INTERNAL;
}
