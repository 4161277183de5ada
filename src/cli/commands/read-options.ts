import { type Command, InvalidArgumentError, Option } from 'commander';
import { Consistency } from '../../client/index.js';
import { parseToken } from './bytes-encoding.js';
import { UsageError } from './usage-error.js';

type Level = 'local' | 'at-least' | 'latest';

const CONSISTENCY_OF: Readonly<Record<Level, Consistency>> = {
  local: Consistency.CONSISTENCY_LOCAL,
  'at-least': Consistency.CONSISTENCY_AT_LEAST,
  latest: Consistency.CONSISTENCY_LATEST,
};

interface ReadFlags {
  readonly consistency?: Level;
  readonly after?: readonly Buffer[];
}

export interface ReadOptions {
  readonly consistency: Consistency;
  readonly after: Buffer[];
}

/** --consistency and --after, for the reads (get, mget, scan). */
export function withReadOptions(command: Command): Command {
  return command
    .addOption(
      new Option(
        '--consistency <level>',
        'local: what this node has applied; at-least: wait for the writes of --after; latest: wait for the ' +
          "log's current end (default: at-least with --after, else local)",
      ).choices(['local', 'at-least', 'latest']),
    )
    .addOption(
      new Option(
        '--after <token>',
        'a token printed by put or del (base64) that the read must see; repeatable',
      ).argParser(collectToken),
    );
}

export function readOptionsOf(command: Command): ReadOptions {
  const { consistency, after = [] } = command.opts<ReadFlags>();
  const level: Level = consistency ?? (after.length > 0 ? 'at-least' : 'local');
  if (level === 'local' && after.length > 0) {
    throw new UsageError('--after needs --consistency at-least (or latest); local reads do not wait');
  }
  if (level === 'at-least' && after.length === 0) throw new UsageError('--consistency at-least needs --after TOKEN');
  return { consistency: CONSISTENCY_OF[level], after: [...after] };
}

function collectToken(value: string, previous: readonly Buffer[] | undefined): Buffer[] {
  try {
    return [...(previous ?? []), parseToken(value, '--after')];
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}
