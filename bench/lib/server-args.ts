import { InvalidArgumentError } from 'commander';

/**
 * Extra `kvs2 serve` flags given as one option value (`--args "--log-level debug"`), split as a shell
 * would split them: on whitespace, with single or double quotes around a value that holds spaces. Nothing
 * else of the shell (no variables, no escapes): the flags are data, never run by a shell.
 */
export function parseServerArgs(text: string): string[] {
  const args: string[] = [];
  let current: string | undefined;
  let quote: '"' | "'" | undefined;
  for (const char of text) {
    if (quote !== undefined) {
      if (char === quote) quote = undefined;
      else current = (current ?? '') + char;
    } else if (char === '"' || char === "'") {
      quote = char;
      current ??= '';
    } else if (/\s/.test(char)) {
      if (current !== undefined) args.push(current);
      current = undefined;
    } else {
      current = (current ?? '') + char;
    }
  }
  if (quote !== undefined) throw new InvalidArgumentError(`unclosed ${quote} in "${text}"`);
  if (current !== undefined) args.push(current);
  for (const arg of ['--listen', '--data-dir', '--kafka-brokers', '--topic']) {
    if (args.some((a) => a === arg || a.startsWith(`${arg}=`))) {
      throw new InvalidArgumentError(`${arg} is set by the suite for every node`);
    }
  }
  return args;
}

/** The flags as one readable string for reports: `(none)` when there are none. */
export function describeServerArgs(args: readonly string[]): string {
  if (args.length === 0) return '(none)';
  return args.map((arg) => (/[\s"']/.test(arg) ? JSON.stringify(arg) : arg)).join(' ');
}
