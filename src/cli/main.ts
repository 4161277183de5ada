import { Command, CommanderError, Option } from 'commander';
import { envVarOf, parseConfig, SETTINGS } from '../config/config.js';
import { ConfigError } from '../config/config-error.js';
import { KVS2_VERSION } from '../version.js';
import { EXIT_OK, EXIT_USAGE, rawSettingsFrom, serve } from './serve-command.js';

function buildProgram(): Command {
  const program = new Command('kvs2')
    .description('A key-value store whose source of truth is a Kafka topic (or an embedded log), served over gRPC')
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
  return program;
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
