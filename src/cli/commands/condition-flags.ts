import { type Command, Option } from 'commander';
import { type Condition, ConditionKind, type SetReply, SetStatus } from '../../client/index.js';
import { formatToken } from './bytes-encoding.js';
import { EXIT_CONFLICT, EXIT_OK } from './exit-codes.js';
import type { Output } from './output.js';
import { UsageError } from './usage-error.js';

interface ConditionFlags {
  readonly ifVersion?: string;
  readonly ifAbsent?: true;
  readonly ifPresent?: true;
}

/** --if-version, --if-absent and --if-present: a compare-and-set (README "Conditional writes"). */
export function withConditionFlags(command: Command, what: string): Command {
  return command
    .addOption(
      new Option(
        '--if-version <version>',
        `${what} only if the key's version is exactly this (from get -o json)`,
      ).conflicts(['ifAbsent', 'ifPresent']),
    )
    .addOption(new Option('--if-absent', `${what} only if the key does not exist`).conflicts('ifPresent'))
    .addOption(new Option('--if-present', `${what} only if the key exists`));
}

/** The condition the flags ask for, or undefined for an unconditional write. */
export function conditionOfFlags(command: Command): Condition | undefined {
  const flags = command.opts<ConditionFlags>();
  if (flags.ifAbsent) return { kind: ConditionKind.CONDITION_ABSENT, version: 0 };
  if (flags.ifPresent) return { kind: ConditionKind.CONDITION_PRESENT, version: 0 };
  if (flags.ifVersion === undefined) return undefined;
  const version = Number(flags.ifVersion);
  if (!/^\d+$/.test(flags.ifVersion) || !Number.isSafeInteger(version) || version < 1) {
    throw new UsageError(`--if-version must be a whole number of at least 1, not ${JSON.stringify(flags.ifVersion)}`);
  }
  return { kind: ConditionKind.CONDITION_VERSION, version };
}

/**
 * Prints a write's outcome. An unconditional write prints its token (text) as it always did; a conditional
 * one says `applied` or `conflict` with the version, and a conflict exits EXIT_CONFLICT.
 */
export function printWriteReply(out: Output, reply: SetReply, conditional: boolean): number {
  const token = formatToken(reply.token);
  if (!conditional) {
    if (out.json) out.object({ token, version: reply.version });
    else out.line(token);
    return EXIT_OK;
  }
  if (reply.status !== SetStatus.APPLIED && reply.status !== SetStatus.CONFLICT) {
    // A node that does not know conditions ignores them and writes anyway.
    throw new Error('the node does not know conditional writes (an older kvs2): it wrote unconditionally');
  }
  const outcome = reply.status === SetStatus.APPLIED ? 'applied' : 'conflict';
  if (out.json) out.object({ status: outcome, version: reply.version, token });
  else out.line(`${outcome} version ${reply.version} ${token}`);
  return outcome === 'applied' ? EXIT_OK : EXIT_CONFLICT;
}
