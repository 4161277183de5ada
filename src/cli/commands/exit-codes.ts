import { status } from '@grpc/grpc-js';
import type { Kvs2ClientError } from '../../client/index.js';

/** Exit codes of the client commands (get, put, ...), by failure class; scripts branch on them. */
export const EXIT_OK = 0;
export const EXIT_NOT_FOUND = 1;
export const EXIT_USAGE = 2;
export const EXIT_UNAVAILABLE = 3;
export const EXIT_REFUSED = 4;
export const EXIT_INTERNAL = 5;
/** A conditional put or del whose condition did not hold: nothing was written. */
export const EXIT_CONFLICT = 6;

export const EXIT_CODES_HELP = `
Exit codes of get, put, del, mget, scan, watch and status:
  0  success
  1  not found (get)
  2  usage: an unknown flag, a missing argument, a key or token that does not decode
  3  unavailable: the node could not be reached, did not answer within --timeout, or is shutting down
  4  refused by the node: an invalid argument, a value or reply too large, overloaded, a token from
     another log or too old, an RPC the node does not have, no or a wrong --token, not permitted
  5  internal: the node failed, or something unexpected happened
  6  conflict: put or del with --if-version, --if-absent or --if-present whose condition did not
     hold; nothing was written (the key's current version is printed)
Failures print one line on stderr: "kvs2 <command>: <code>: <message>".`;

/** The exit code of a failed call, from its gRPC status (the kvs2 code refines the message, not the class). */
export function exitCodeOf(error: Kvs2ClientError): number {
  switch (error.code) {
    case status.UNAVAILABLE:
    case status.DEADLINE_EXCEEDED:
    case status.CANCELLED:
      return EXIT_UNAVAILABLE;
    case status.INVALID_ARGUMENT:
    case status.RESOURCE_EXHAUSTED:
    case status.FAILED_PRECONDITION:
    case status.OUT_OF_RANGE:
    case status.UNIMPLEMENTED:
    case status.PERMISSION_DENIED:
    case status.UNAUTHENTICATED:
    case status.NOT_FOUND:
    case status.ALREADY_EXISTS:
    case status.ABORTED:
      return EXIT_REFUSED;
    default:
      return EXIT_INTERNAL;
  }
}
