import { Command, CommanderError, Option } from 'commander';
import { envVarOf, parseConfig, SETTINGS } from '../config/config.js';
import { ConfigError } from '../config/config-error.js';
import { KVS2_VERSION } from '../version.js';
import { authCommand } from './commands/auth.js';
import { compactCommand } from './commands/compact.js';
import { delCommand } from './commands/del.js';
import { EXIT_CODES_HELP, EXIT_OK, EXIT_USAGE } from './commands/exit-codes.js';
import { getCommand } from './commands/get.js';
import { mgetCommand } from './commands/mget.js';
import { putCommand } from './commands/put.js';
import { scanCommand } from './commands/scan.js';
import { snapshotCommand } from './commands/snapshot.js';
import { statusCommand } from './commands/status.js';
import { watchCommand } from './commands/watch.js';

function buildProgram(): Command {
  const program = new Command('kvs2')
    .description(
      'A key-value store whose source of truth is a Kafka topic (or an embedded log), served over gRPC.\n' +
        '`kvs2 serve` runs a node; get, put, del, mget, scan, watch and status talk to a running one.\n' +
        "`kvs2 snapshot` and `kvs2 compact` work on a stopped node's data dir, but for\n" +
        "`kvs2 snapshot save --endpoint`, which takes a running node's snapshot over its API.",
    )
    .version(KVS2_VERSION)
    .exitOverride()
    .showHelpAfterError('(run kvs2 serve --help for the settings)');

  const serveCommand = program
    .command('serve')
    .description(
      'Run a kvs2 node: serve Get/MultiGet/Set over gRPC from a local LMDB replica of the log.\n' +
        'Every setting can also come from the KVS2_* environment variable shown; flags win.',
    )
    .exitOverride()
    .action(async () => {
      // Loaded here, not at the top: the client commands then start without loading the whole server.
      const { rawSettingsFrom, serve } = await import('./serve-command.js');
      let config: ReturnType<typeof parseConfig>;
      try {
        config = parseConfig(rawSettingsFrom(serveCommand.opts()));
      } catch (error) {
        if (error instanceof ConfigError) {
          process.stderr.write(`kvs2: ${error.message}\n`);
          process.exit(EXIT_USAGE);
        }
        throw error;
      }
      await serve(config);
    });
  for (const spec of SETTINGS) {
    const option = new Option(`--${spec.name} <${spec.valueName}>`, spec.description).env(envVarOf(spec.name));
    if ('defaultValue' in spec) option.default(spec.defaultValue);
    serveCommand.addOption(option);
  }

  // The client commands, against a running node (as etcdctl's): each in src/cli/commands/.
  for (const command of [
    getCommand(),
    putCommand(),
    delCommand(),
    mgetCommand(),
    scanCommand(),
    watchCommand(),
    statusCommand(),
  ]) {
    program.addCommand(command.addHelpText('after', EXIT_CODES_HELP));
  }
  program.addCommand(authCommand());
  // On files and a stopped node's data dir, with exit codes of their own (offline-command.ts).
  program.addCommand(snapshotCommand());
  program.addCommand(compactCommand());
  program.addHelpText('after', EXIT_CODES_HELP);
  return program;
}

if (process.argv[2] !== 'serve') {
  // A reader that stops early (`kvs2 scan p/ | head`) closes the pipe: the command's output is no longer
  // wanted, so it ends quietly, as Unix tools do, instead of crashing with a stack trace. (A node's logs
  // are not covered: a server does not stop because its log reader went away.)
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(EXIT_OK);
    throw error;
  });
}

try {
  await buildProgram().parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    const informational = ['commander.helpDisplayed', 'commander.version', 'commander.help'].includes(error.code);
    process.exit(informational ? EXIT_OK : EXIT_USAGE);
  }
  throw error;
}
