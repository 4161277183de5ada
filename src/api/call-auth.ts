import type { Metadata } from '@grpc/grpc-js';
import type { Authorizer } from '../auth/authorizer.js';
import type { Access, Target } from '../auth/policy.js';

/** What a call needs: this access to every one of these targets. */
export interface CallNeeds {
  readonly access: Access;
  readonly targets: readonly Target[];
}

/**
 * Checks a kvs2.Kvs2 call against --auth-file before the service sees it: synchronous once the caller's
 * token is known, a promise while a new one is verified. Throws (or rejects with) UNAUTHENTICATED or
 * PERMISSION_DENIED. Null when auth is off: every call is allowed, as without --auth-file.
 */
export type CallGuard = (
  call: { readonly metadata: Metadata; getPeer(): string; getAuthContext(): PeerContext },
  method: string,
  needs: CallNeeds,
) => void | Promise<void>;

/** What grpc-js's call.getAuthContext() says of the peer (its AuthContext type is not exported). */
interface PeerContext {
  readonly sslPeerCertificate?: { readonly subject?: { readonly CN?: unknown } };
}

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/**
 * `certificates`: the server requires client certificates signed by its client CA (mutual TLS), so a
 * certificate's CN is an identity the CA vouched for; a call without a token then is that CN.
 */
export function callGuard(authorizer: Authorizer, { certificates }: { certificates: boolean }): CallGuard {
  return (call, method, { access, targets }) => {
    const [header] = call.metadata.get('authorization');
    const token = typeof header === 'string' ? BEARER.exec(header)?.[1] : undefined;
    const caller = {
      token,
      certificateName: certificates && token === undefined ? certificateName(call.getAuthContext()) : undefined,
      method,
      peer: call.getPeer(),
    };
    const identity = authorizer.authenticate(caller);
    if (typeof identity === 'string') return authorizer.authorize(caller, identity, access, targets);
    return identity.then((known) => authorizer.authorize(caller, known, access, targets));
  };
}

/** The CN of the client's certificate, when there is exactly one. */
function certificateName(context: PeerContext): string | undefined {
  const cn = context.sslPeerCertificate?.subject?.CN;
  return typeof cn === 'string' && cn !== '' ? cn : undefined;
}

export const EVERY_KEY: Target = { kind: 'prefix', prefix: Buffer.alloc(0) };

export function keyTarget(key: Buffer): Target {
  return { kind: 'key', key };
}

/** A Scan's keys: its prefix, or its [start, end) range (an empty end: no upper bound). */
export function scanTarget(request: { prefix: Buffer; start: Buffer; end: Buffer }): Target {
  if (request.prefix.length > 0) return { kind: 'prefix', prefix: request.prefix };
  return { kind: 'range', start: request.start, end: request.end.length === 0 ? undefined : request.end };
}

/** A Watch's keys: its key, or its prefix (empty: every key). */
export function watchTarget(request: { key: Buffer; prefix: Buffer }): Target {
  return request.key.length > 0 ? { kind: 'key', key: request.key } : { kind: 'prefix', prefix: request.prefix };
}
