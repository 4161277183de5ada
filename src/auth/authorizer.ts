import { createHash } from 'node:crypto';
import { Kvs2Error } from '../errors.js';
import type { Logger } from '../logger.js';
import { AuthFailureLog, type AuthFailureReason } from './failure-log.js';
import { type Access, type AuthPolicy, allows, describeTarget, loadPolicy, type Target } from './policy.js';
import { tokenMatches } from './token-hash.js';

export interface AuthorizerOptions {
  readonly file: string;
  readonly logger: Logger;
  /** Counts each refused call (kvs2_auth_failures_total); by default nothing does. */
  readonly onFailure?: (reason: AuthFailureReason) => void;
}

/** Who is calling, where from, and which method: what a refusal is logged with. */
export interface CallerInfo {
  /** The bearer token sent, or undefined for none. */
  readonly token: string | undefined;
  /** Under mutual TLS, the CN of the client's certificate (which the client CA vouched for); else undefined. */
  readonly certificateName: string | undefined;
  readonly method: string;
  readonly peer: string;
}

/** Distinct unknown tokens remembered as refused; beyond it that memory starts over. */
const MAX_REFUSED_TOKENS = 10_000;
/**
 * New tokens verified at once. scrypt is slow and memory-hungry on purpose, and a token nobody has sent
 * before costs one scrypt per identity: without a bound, a flood of random tokens would queue unbounded
 * work on the thread pool. Beyond it a new token is refused OVERLOADED at once (the client may retry);
 * tokens already verified never wait for this.
 */
const MAX_VERIFICATIONS_AT_ONCE = 4;

/**
 * The auth file (--auth-file) at work: authenticates bearer tokens and decides what each identity may do.
 * scrypt runs once per distinct token (it is slow on purpose): verdicts are cached by the token's SHA-256,
 * so a known token costs one hash and a map lookup per call. Reloading the file drops the cache.
 */
export class Authorizer {
  readonly #file: string;
  readonly #failures: AuthFailureLog;
  readonly #onFailure: (reason: AuthFailureReason) => void;
  #policy: AuthPolicy;
  /**
   * SHA-256 of a token → its identity. Only tokens that matched are here: at most one per identity, so
   * unknown tokens, remembered apart, can never push a good one out.
   */
  #verdicts = new Map<string, string>();
  /** SHA-256 of tokens that matched no identity. */
  #refused = new Set<string>();
  /** Verifications under way, so that concurrent calls with one new token share one scrypt. */
  #pending = new Map<string, Promise<string | null>>();
  readonly #reloadListeners = new Set<() => void>();

  /** Loads the file; throws AuthFileError when it is unreadable or wrong. */
  constructor({ file, logger, onFailure }: AuthorizerOptions) {
    this.#file = file;
    this.#policy = loadPolicy(file);
    this.#failures = new AuthFailureLog(logger);
    this.#onFailure = onFailure ?? (() => {});
  }

  get file(): string {
    return this.#file;
  }

  /** Identities with a token, and with grants: for the start-up line. */
  get counts(): { tokens: number; identities: number } {
    return { tokens: this.#policy.tokens.size, identities: this.#policy.grants.size };
  }

  /** Re-reads the file; throws AuthFileError (keeping the policy in force) when the new one is bad. */
  reload(): void {
    const policy = loadPolicy(this.#file);
    this.#policy = policy;
    this.#verdicts = new Map();
    this.#refused = new Set();
    this.#pending = new Map();
    for (const listener of this.#reloadListeners) listener();
  }

  /**
   * Calls `listener` after each reload that took effect: what was allowed under the old policy (an open
   * watch) must be checked again. Returns the unsubscribe function.
   */
  onReload(listener: () => void): () => void {
    this.#reloadListeners.add(listener);
    return () => this.#reloadListeners.delete(listener);
  }

  /**
   * The caller's identity: synchronous for a token seen before, a promise while a new token is verified.
   * A token wins over a certificate; without one, the certificate's CN is the identity. Throws (or
   * rejects with) UNAUTHENTICATED.
   */
  authenticate(caller: CallerInfo): string | Promise<string> {
    const { token } = caller;
    if ((token === undefined || token === '') && caller.certificateName !== undefined) return caller.certificateName;
    if (token === undefined || token === '') {
      throw this.#refuse(
        caller,
        null,
        'no_token',
        new Kvs2Error('UNAUTHENTICATED', 'no bearer token: send authorization: Bearer <token>'),
      );
    }
    const digest = createHash('sha256').update(token).digest('base64');
    const known = this.#verdicts.get(digest);
    if (known !== undefined) return known;
    if (this.#refused.has(digest)) return this.#identityOr(caller, null);
    let pending = this.#pending.get(digest);
    if (pending === undefined) {
      if (this.#pending.size >= MAX_VERIFICATIONS_AT_ONCE) {
        throw this.#refuse(
          caller,
          null,
          'verification_overloaded',
          new Kvs2Error('OVERLOADED', 'too many new bearer tokens being verified at once; retry shortly'),
        );
      }
      const policy = this.#policy;
      pending = this.#identify(token, policy).then((identity) => {
        // A reload meanwhile started a new cache: this verdict was for the old policy.
        if (this.#policy === policy) {
          if (identity !== null) this.#verdicts.set(digest, identity);
          else {
            if (this.#refused.size >= MAX_REFUSED_TOKENS) this.#refused.clear();
            this.#refused.add(digest);
          }
          this.#pending.delete(digest);
        }
        return identity;
      });
      // A failed verification (not a mismatch: scrypt itself failed) is not remembered.
      pending.catch(() => this.#pending.delete(digest));
      this.#pending.set(digest, pending);
    }
    return pending.then((identity) => this.#identityOr(caller, identity));
  }

  /** Throws PERMISSION_DENIED, naming the keys, unless `identity` may do `access` on every target. */
  authorize(caller: CallerInfo, identity: string, access: Access, targets: readonly Target[]): void {
    for (const target of targets) {
      if (!allows(this.#policy, identity, access, target)) {
        throw this.#refuse(
          caller,
          identity,
          'permission_denied',
          new Kvs2Error('PERMISSION_DENIED', `${JSON.stringify(identity)} may not ${access} ${describeTarget(target)}`),
        );
      }
    }
  }

  close(): void {
    this.#failures.close();
  }

  #identityOr(caller: CallerInfo, identity: string | null): string {
    if (identity !== null) return identity;
    throw this.#refuse(caller, null, 'bad_token', new Kvs2Error('UNAUTHENTICATED', 'unknown bearer token'));
  }

  /** The identity whose hash the token matches (tried in turn: each has its own salt), or null. */
  async #identify(token: string, policy: AuthPolicy): Promise<string | null> {
    for (const [identity, hash] of policy.tokens) {
      if (await tokenMatches(token, hash)) return identity;
    }
    return null;
  }

  #refuse(caller: CallerInfo, identity: string | null, reason: AuthFailureReason, error: Kvs2Error): Kvs2Error {
    this.#onFailure(reason);
    this.#failures.record({ reason, identity, method: caller.method, peer: caller.peer, message: error.message });
    return error;
  }
}
