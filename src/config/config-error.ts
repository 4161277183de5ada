/** A user mistake in configuration: the CLI prints it as one line naming the setting and exits 2. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';

  constructor(
    /** The flag that carries the bad value, e.g. `--max-key-bytes`. */
    readonly setting: string,
    message: string,
  ) {
    super(`invalid ${setting}: ${message}`);
  }
}
