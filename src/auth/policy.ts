import { readFileSync } from 'node:fs';
import { describeError } from '../errors.js';
import { prefixEnd } from '../key-prefix.js';
import { parseTokenHash, type TokenHash } from './token-hash.js';

/** What a call does to keys. */
export type Access = 'read' | 'write' | 'watch';

/** One grant: this access to every key that starts with `prefix` (empty: every key). */
export interface Grant {
  readonly prefix: Buffer;
  readonly read: boolean;
  readonly write: boolean;
  readonly watch: boolean;
}

/** The keys a call touches. */
export type Target =
  | { readonly kind: 'key'; readonly key: Buffer }
  | { readonly kind: 'prefix'; readonly prefix: Buffer }
  /** [start, end); end undefined: no upper bound. */
  | { readonly kind: 'range'; readonly start: Buffer; readonly end: Buffer | undefined };

/** The auth file, parsed: who holds which token, and who may do what. Default deny. */
export interface AuthPolicy {
  readonly tokens: ReadonlyMap<string, TokenHash>;
  readonly grants: ReadonlyMap<string, readonly Grant[]>;
}

/** A problem with the auth file, naming where it is. */
export class AuthFileError extends Error {
  override readonly name = 'AuthFileError';
}

/** Reads and checks the auth file; throws AuthFileError naming the first problem. */
export function loadPolicy(path: string): AuthPolicy {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new AuthFileError(`cannot read ${path}: ${describeError(error)}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new AuthFileError(`${path} is not JSON: ${describeError(error)}`);
  }
  return parsePolicy(json, path);
}

export function parsePolicy(json: unknown, where: string): AuthPolicy {
  const fail = (message: string): never => {
    throw new AuthFileError(`${where}: ${message}`);
  };
  if (!isObject(json)) return fail('expected an object with "tokens" and "permissions"');
  for (const field of Object.keys(json)) {
    if (field !== 'tokens' && field !== 'permissions') fail(`unknown field "${field}"`);
  }
  const tokens = new Map<string, TokenHash>();
  const tokenField = json.tokens ?? {};
  if (!isObject(tokenField)) return fail('"tokens" must be an object: identity → token hash');
  for (const [identity, encoded] of Object.entries(tokenField)) {
    if (typeof encoded !== 'string') return fail(`tokens.${identity}: expected a hash string`);
    const parsed = parseTokenHash(encoded);
    if (typeof parsed === 'string') return fail(`tokens.${identity}: ${parsed}`);
    tokens.set(identity, parsed);
  }
  const grants = new Map<string, Grant[]>();
  const permissionField = json.permissions ?? {};
  if (!isObject(permissionField)) return fail('"permissions" must be an object: identity → list of grants');
  for (const [identity, list] of Object.entries(permissionField)) {
    if (!Array.isArray(list)) return fail(`permissions.${identity}: expected a list of {prefix, read, write, watch}`);
    grants.set(
      identity,
      list.map((entry: unknown, i): Grant => {
        const at = `permissions.${identity}[${i}]`;
        if (!isObject(entry)) return fail(`${at}: expected {prefix, read, write, watch}`);
        for (const field of Object.keys(entry)) {
          if (!['prefix', 'read', 'write', 'watch'].includes(field)) fail(`${at}: unknown field "${field}"`);
        }
        if (typeof entry.prefix !== 'string') return fail(`${at}.prefix: expected a string ("" for every key)`);
        const flag = (name: Access): boolean => {
          const v = entry[name] ?? false;
          if (typeof v !== 'boolean') fail(`${at}.${name}: expected true or false`);
          return v === true;
        };
        return {
          prefix: Buffer.from(entry.prefix, 'utf8'),
          read: flag('read'),
          write: flag('write'),
          watch: flag('watch'),
        };
      }),
    );
  }
  return { tokens, grants };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Whether `grant` covers every key of `target`. */
export function covers(grant: Grant, target: Target): boolean {
  const p = grant.prefix;
  switch (target.kind) {
    case 'key':
      return startsWith(target.key, p);
    case 'prefix':
      return startsWith(target.prefix, p);
    case 'range': {
      // [start, end) within [p, prefixEnd(p)): start has the prefix and end is no later than the prefix's end.
      if (!startsWith(target.start, p)) return false;
      const limit = prefixEnd(p);
      if (limit === undefined) return true;
      return target.end !== undefined && Buffer.compare(target.end, limit) <= 0;
    }
  }
}

/** Whether the identity may do `access` on all of `target`. */
export function allows(policy: AuthPolicy, identity: string, access: Access, target: Target): boolean {
  const list = policy.grants.get(identity);
  if (list === undefined) return false;
  return list.some((grant) => grant[access] && covers(grant, target));
}

function startsWith(key: Buffer, prefix: Buffer): boolean {
  return key.length >= prefix.length && key.subarray(0, prefix.length).equals(prefix);
}

/** A target as the denial message names it. */
export function describeTarget(target: Target): string {
  const show = (b: Buffer): string => JSON.stringify(b.toString('utf8'));
  switch (target.kind) {
    case 'key':
      return `key ${show(target.key)}`;
    case 'prefix':
      return `prefix ${show(target.prefix)}`;
    case 'range':
      return `range [${show(target.start)}, ${target.end === undefined ? 'end' : show(target.end)})`;
  }
}
