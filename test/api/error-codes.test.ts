import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { ERROR_CODE_METADATA_KEY, statusOf, toStatusError } from '../../src/api/status-mapping.js';
import {
  ERROR_CODE_METADATA_KEY as CLIENT_METADATA_KEY,
  Kvs2ClientError,
  SERVER_ERROR_CODES,
} from '../../src/client/client-error.js';
import { Kvs2Error, type Kvs2ErrorCode } from '../../src/errors.js';

/**
 * Every code of the server's Kvs2ErrorCode union. The compiler refuses this table when a code is added to
 * the union and not here (or one here is not in the union), so the comparisons below always see them all.
 */
const EVERY_SERVER_CODE: Readonly<Record<Kvs2ErrorCode, true>> = {
  INVALID_ARGUMENT: true,
  LOG_UNAVAILABLE: true,
  LOG_MISCONFIGURED: true,
  LOG_RECREATED: true,
  LOG_OUTCOME_UNKNOWN: true,
  LOG_POSITION_LOST: true,
  TOKEN_FROM_OTHER_LOG: true,
  WATCHER_TOO_SLOW: true,
  TOKEN_TOO_OLD: true,
  STORE_UNAVAILABLE: true,
  DEADLINE_EXCEEDED: true,
  CANCELLED: true,
  SHUTTING_DOWN: true,
  REPLY_TOO_LARGE: true,
  OVERLOADED: true,
  INCONSISTENT_STATE: true,
  DATA_FORMAT_UNSUPPORTED: true,
  SNAPSHOT_INVALID: true,
  DATA_DIR_IN_USE: true,
  UNAUTHENTICATED: true,
  PERMISSION_DENIED: true,
};
const serverCodes = Object.keys(EVERY_SERVER_CODE) as Kvs2ErrorCode[];

/** What a client receives for a status error the server sent. */
function received(error: ReturnType<typeof toStatusError>): Kvs2ClientError {
  const serviceError: ServiceError = Object.assign(new Error(`${error.code} ${error.details}`), {
    code: error.code,
    details: error.details,
    metadata: error.metadata ?? new Metadata(),
  });
  return new Kvs2ClientError(serviceError);
}

describe('kvs2 error codes between server and client', () => {
  test("the client's SERVER_ERROR_CODES are exactly the server's Kvs2ErrorCode values, and each reads back", () => {
    assert.deepEqual([...SERVER_ERROR_CODES].sort(), [...serverCodes].sort());
    assert.equal(new Set(SERVER_ERROR_CODES).size, SERVER_ERROR_CODES.length, 'no code listed twice');
    for (const code of serverCodes) {
      const error = received(toStatusError(new Kvs2Error(code, 'failed')));
      assert.equal(error.kvs2Code, code);
      assert.equal(error.code, statusOf(code));
    }
  });

  test('every code the client knows is one the server sends, and reads back from the trailer', () => {
    const client: readonly string[] = SERVER_ERROR_CODES;
    assert.deepEqual(
      client.filter((code) => !(code in EVERY_SERVER_CODE)),
      [],
    );
    for (const code of SERVER_ERROR_CODES) {
      assert.equal(received(toStatusError(new Kvs2Error(code, 'failed'))).kvs2Code, code);
    }
  });

  test('both sides name the same trailer', () => {
    assert.equal(CLIENT_METADATA_KEY, ERROR_CODE_METADATA_KEY);
    assert.equal(ERROR_CODE_METADATA_KEY, 'kvs2-error-code');
  });

  test('the server maps every code to a failing gRPC status and sends the code in the trailer', () => {
    for (const code of serverCodes) {
      const error = toStatusError(new Kvs2Error(code, `a ${code} failure`));
      assert.equal(typeof error.code, 'number', `${code} has a gRPC status`);
      assert.notEqual(error.code, status.OK, code);
      assert.equal(error.code, statusOf(code), code);
      assert.equal(error.details, `a ${code} failure`);
      assert.deepEqual(error.metadata?.get(ERROR_CODE_METADATA_KEY), [code]);
    }
    // Only a state the node cannot repair is an internal error; every other code says what went wrong.
    assert.deepEqual(
      serverCodes.filter((code) => statusOf(code) === status.INTERNAL),
      ['INCONSISTENT_STATE'],
    );
  });

  test('without a known trailer, the client names the gRPC status', () => {
    const unclassified = received(toStatusError(new Error('boom')));
    assert.deepEqual([unclassified.code, unclassified.kvs2Code], [status.INTERNAL, 'GRPC_INTERNAL']);
    const unknown = toStatusError(new Kvs2Error('LOG_UNAVAILABLE', 'down'));
    unknown.metadata?.set(ERROR_CODE_METADATA_KEY, 'A_CODE_FROM_THE_FUTURE');
    assert.equal(received(unknown).kvs2Code, 'GRPC_UNAVAILABLE');
  });
});
