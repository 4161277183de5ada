import { bytesField, varintField } from './protobuf-wire.js';

/**
 * The request messages of proto/kvs2.proto as field tables, written out by hand so the tests can both
 * encode requests field by field and judge, independently of the server's decoder, whether a body is a
 * valid encoding of its message.
 */

export type FieldKind = 'bytes' | 'varint' | MessageSchema;

export interface FieldSpec {
  readonly name: string;
  readonly number: number;
  readonly kind: FieldKind;
  readonly repeated: boolean;
}

export interface MessageSchema {
  readonly name: string;
  readonly fields: readonly FieldSpec[];
}

const field = (name: string, number: number, kind: FieldKind, repeated = false): FieldSpec => ({
  name,
  number,
  kind,
  repeated,
});

export const GET_REQUEST: MessageSchema = {
  name: 'GetRequest',
  fields: [field('key', 1, 'bytes'), field('consistency', 2, 'varint'), field('after', 3, 'bytes', true)],
};

export const MULTI_GET_REQUEST: MessageSchema = {
  name: 'MultiGetRequest',
  fields: [field('keys', 1, 'bytes', true), field('consistency', 2, 'varint'), field('after', 3, 'bytes', true)],
};

export const SET_REQUEST: MessageSchema = {
  name: 'SetRequest',
  fields: [field('key', 1, 'bytes'), field('value', 2, 'bytes'), field('wait_for_apply', 3, 'varint')],
};

export const DELETE_REQUEST: MessageSchema = {
  name: 'DeleteRequest',
  fields: [field('key', 1, 'bytes'), field('wait_for_apply', 2, 'varint')],
};

export const MUTATION: MessageSchema = {
  name: 'Mutation',
  fields: [field('key', 1, 'bytes'), field('value', 2, 'bytes'), field('delete', 3, 'varint')],
};

export const WRITE_REQUEST: MessageSchema = {
  name: 'WriteRequest',
  fields: [field('mutations', 1, MUTATION, true), field('wait_for_apply', 2, 'varint')],
};

export const SCAN_REQUEST: MessageSchema = {
  name: 'ScanRequest',
  fields: [
    field('prefix', 1, 'bytes'),
    field('start', 2, 'bytes'),
    field('end', 3, 'bytes'),
    field('limit', 4, 'varint'),
    field('keys_only', 5, 'varint'),
    field('continuation', 6, 'bytes'),
    field('consistency', 7, 'varint'),
    field('after', 8, 'bytes', true),
  ],
};

export const WATCH_REQUEST: MessageSchema = {
  name: 'WatchRequest',
  fields: [
    field('key', 1, 'bytes'),
    field('prefix', 2, 'bytes'),
    field('after', 3, 'bytes'),
    field('progress_interval_ms', 4, 'varint'),
  ],
};

export const STATUS_REQUEST: MessageSchema = { name: 'StatusRequest', fields: [] };

export const SNAPSHOT_REQUEST: MessageSchema = {
  name: 'SnapshotRequest',
  fields: [field('max_bytes_per_second', 1, 'varint')],
};

export type Rpc = 'Get' | 'MultiGet' | 'Set' | 'Delete' | 'Write' | 'Scan' | 'Watch' | 'Status' | 'Snapshot';

export const REQUEST_SCHEMA: Readonly<Record<Rpc, MessageSchema>> = {
  Get: GET_REQUEST,
  MultiGet: MULTI_GET_REQUEST,
  Set: SET_REQUEST,
  Delete: DELETE_REQUEST,
  Write: WRITE_REQUEST,
  Scan: SCAN_REQUEST,
  Watch: WATCH_REQUEST,
  Status: STATUS_REQUEST,
  Snapshot: SNAPSHOT_REQUEST,
};

/** A message's field values by field name: bytes, integers (varint fields), nested messages, or lists. */
export type FieldValue = Buffer | bigint | number | boolean | MessageValue;
export interface MessageValue {
  readonly [name: string]: FieldValue | readonly FieldValue[] | undefined;
}

/**
 * The canonical encoding of a message, one chunk per field occurrence in field-number order, leaving
 * out default values as proto3 encoders do. Chunk boundaries are where hostile bytes can be inserted
 * between whole fields.
 */
export function encodeFields(schema: MessageSchema, value: MessageValue): Buffer[] {
  const chunks: Buffer[] = [];
  for (const spec of schema.fields) {
    const given = value[spec.name];
    if (given === undefined) continue;
    const items: readonly FieldValue[] = spec.repeated ? (given as readonly FieldValue[]) : [given as FieldValue];
    for (const item of items) {
      const chunk = encodeField(spec, item, spec.repeated);
      if (chunk !== undefined) chunks.push(chunk);
    }
  }
  return chunks;
}

export function encodeMessage(schema: MessageSchema, value: MessageValue): Buffer {
  return Buffer.concat(encodeFields(schema, value));
}

function encodeField(spec: FieldSpec, item: FieldValue, repeated: boolean): Buffer | undefined {
  if (spec.kind === 'bytes') {
    const bytes = item as Buffer;
    return bytes.length === 0 && !repeated ? undefined : bytesField(spec.number, bytes);
  }
  if (spec.kind === 'varint') {
    const number = typeof item === 'boolean' ? BigInt(item) : BigInt(item as number | bigint);
    return number === 0n ? undefined : varintField(spec.number, number);
  }
  return bytesField(spec.number, encodeMessage(spec.kind, item as MessageValue));
}
