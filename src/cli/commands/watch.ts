import type { ServiceError } from '@grpc/grpc-js';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { Kvs2ClientError, type WatchEvent, WatchEvent_Kind } from '../../client/index.js';
import { type BytesEncoding, formatBytes, formatToken, parseBytes, parseToken, textBytes } from './bytes-encoding.js';
import { clientCommand, runClientCommand } from './client-command.js';
import { EXIT_OK } from './exit-codes.js';
import type { Output } from './output.js';
import { UsageError } from './usage-error.js';

const TAB = Buffer.from('\t');
const EMPTY = Buffer.alloc(0);

interface WatchFlags {
  readonly prefix?: string;
  readonly after?: Buffer;
  readonly progress?: true;
}

/**
 * `kvs2 watch [KEY]` or `--prefix P`: prints changes as they are applied, until Ctrl-C (SIGINT) or SIGTERM,
 * which end it with exit 0. Text: `PUT<TAB>key<TAB>value` or `DELETE<TAB>key`; json: {kind, key, value, version, token},
 * whose token resumes the watch with --after.
 */
export function watchCommand(): Command {
  return clientCommand('watch', 'Print changes to a key, a prefix or every key as they happen, until Ctrl-C')
    .argument('[key]', 'watch this key only')
    .option('--prefix <prefix>', 'watch the keys starting with this instead (default: every key)')
    .addOption(
      new Option('--after <token>', 'start after the writes of this token (from put, del or a json event)').argParser(
        singleToken,
      ),
    )
    .option('--progress', 'also print progress events (no change up to a token), as PROGRESS<TAB>token')
    .action((key: string | undefined, _flags: unknown, command: Command) =>
      runClientCommand(command, async ({ client, out, encoding }) => {
        const flags = command.opts<WatchFlags>();
        if (key !== undefined && flags.prefix !== undefined) throw new UsageError('give a key or --prefix, not both');
        const stream = client.watch({
          key: key === undefined ? EMPTY : parseBytes(key, encoding, 'key'),
          prefix: flags.prefix === undefined ? EMPTY : parseBytes(flags.prefix, encoding, '--prefix'),
          after: flags.after ?? EMPTY,
        });
        return new Promise<number>((resolve, reject) => {
          let stopping = false;
          const stop = () => {
            stopping = true;
            stream.cancel();
          };
          const done = () => {
            process.off('SIGINT', stop).off('SIGTERM', stop);
            process.stdout.off('error', onStdoutError);
          };
          // A reader that went away (`kvs2 watch | head -1`) ends the watch as Ctrl-C does.
          const onStdoutError = (error: NodeJS.ErrnoException) => (error.code === 'EPIPE' ? stop() : undefined);
          process.on('SIGINT', stop).on('SIGTERM', stop);
          process.stdout.on('error', onStdoutError);
          stream.on('data', (event: WatchEvent) => printEvent(event, out, encoding, flags.progress === true));
          stream.on('error', (error: ServiceError) => {
            done();
            if (stopping) resolve(EXIT_OK);
            else reject(error instanceof Kvs2ClientError ? error : new Kvs2ClientError(error));
          });
          // The node ended the stream without an error: nothing more will come.
          stream.on('end', () => {
            done();
            resolve(EXIT_OK);
          });
        });
      }),
    );
}

function printEvent(event: WatchEvent, out: Output, encoding: BytesEncoding, progress: boolean): void {
  const token = formatToken(event.token);
  switch (event.kind) {
    case WatchEvent_Kind.PUT:
      if (out.json) {
        out.object({
          kind: 'put',
          key: formatBytes(event.key, encoding),
          value: formatBytes(event.value, encoding),
          version: event.version,
          token,
        });
      } else {
        out.line('PUT\t', textBytes(event.key, encoding), TAB, textBytes(event.value, encoding));
      }
      return;
    case WatchEvent_Kind.DELETE:
      if (out.json)
        out.object({ kind: 'delete', key: formatBytes(event.key, encoding), version: event.version, token });
      else out.line('DELETE\t', textBytes(event.key, encoding));
      return;
    default:
      if (!progress) return;
      if (out.json) out.object({ kind: 'progress', token });
      else out.line(`PROGRESS\t${token}`);
  }
}

function singleToken(value: string): Buffer {
  try {
    return parseToken(value, '--after');
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}
