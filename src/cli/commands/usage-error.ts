/** A command line the command cannot run (exit 2): found after commander's own checks, e.g. a key's encoding. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}
