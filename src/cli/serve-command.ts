import { type Config, type RawSettings, SETTINGS } from '../config/config.js';
import { ConfigError } from '../config/config-error.js';
import type { Kvs2Error } from '../errors.js';
import { createLogger, type Logger } from '../logger.js';
import { KvsNode } from './node.js';

/** Exit codes: 0 clean stop, 1 failure at run time, 2 invalid usage or configuration. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/**
 * Runs a node until SIGINT or SIGTERM, then shuts it down gracefully and exits 0. A second signal
 * during shutdown exits at once. SIGHUP re-reads the TLS certificate files and the auth file.
 */
export async function serve(config: Config): Promise<never> {
  const logger = createLogger(config.logLevel);
  let node: KvsNode | undefined;
  let stopping = false;

  const stop = async (reason: string, exitCode: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    logger.info({ reason }, 'kvs2 shutting down');
    try {
      await node?.close();
    } catch (error) {
      logger.error({ err: error }, 'shutdown failed');
      exitCode = EXIT_FAILURE;
    }
    process.exit(exitCode);
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (stopping) {
        logger.warn({ signal }, 'second signal during shutdown: exiting now');
        process.exit(EXIT_FAILURE);
      }
      void stop(signal, EXIT_OK);
    });
  }
  process.on('SIGHUP', () => {
    void node?.reloadTls();
    void node?.reloadAuth();
  });
  process.on('uncaughtException', (error) => crash(logger, error));
  process.on('unhandledRejection', (error) => crash(logger, error));

  try {
    node = await KvsNode.start({
      config,
      logger,
      onFatal: (error: Kvs2Error) => void stop(`fatal: ${error.message}`, EXIT_FAILURE),
    });
  } catch (error) {
    if (error instanceof ConfigError) {
      // A certificate file that cannot be read is a usage error, as a bad flag is.
      process.stderr.write(`kvs2: ${error.message}\n`);
      process.exit(EXIT_USAGE);
    }
    logger.fatal({ err: error }, `kvs2 could not start: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(EXIT_FAILURE);
  }
  // Runs until a signal arrives.
  return new Promise<never>(() => {});
}

function crash(logger: Logger, error: unknown): never {
  logger.fatal({ err: error }, 'kvs2 crashed');
  process.exit(EXIT_FAILURE);
}

/** Raw settings from the parsed command-line options, by setting name. */
export function rawSettingsFrom(optionValues: Readonly<Record<string, unknown>>): RawSettings {
  const raw: Partial<Record<(typeof SETTINGS)[number]['name'], string>> = {};
  for (const spec of SETTINGS) {
    const value = optionValues[camelCase(spec.name)];
    if (typeof value === 'string') raw[spec.name] = value;
  }
  return raw;
}

function camelCase(name: string): string {
  return name.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase());
}
