export type OutputFormat = 'text' | 'json';

/** Writes a command's results to stdout: lines of text, or one JSON object per line. */
export class Output {
  constructor(readonly format: OutputFormat) {}

  get json(): boolean {
    return this.format === 'json';
  }

  /** One line of text; Buffers go out as they are (raw UTF-8 keys and values). */
  line(...parts: ReadonlyArray<string | Buffer>): void {
    process.stdout.write(
      Buffer.concat([...parts.map((part) => (typeof part === 'string' ? Buffer.from(part) : part)), NEWLINE]),
    );
  }

  /** One JSON object on one line (JSON lines). */
  object(value: Readonly<Record<string, unknown>>): void {
    process.stdout.write(`${JSON.stringify(value)}\n`);
  }
}

const NEWLINE = Buffer.from('\n');
