import { isUtf8 } from 'node:buffer';
import { type DescField, type DescMessage, ScalarType } from '@bufbuild/protobuf';

/**
 * A strict check of the protobuf wire format, run on every request body before the generated decoder sees
 * it. The generated decoders are lenient the way protobuf runtimes usually are: they stop at a stray
 * END_GROUP or a zero tag and return what they had, truncate over-long tags and varints, and skip a known
 * field sent with another wire type. A server that acts on such a body acts on something the client never
 * meant, so kvs2 refuses any body that is not a valid encoding of its message. Unknown fields of the
 * four valid wire types are still accepted: a newer client may send fields this node does not know yet.
 */

const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const FIXED32 = 5;
/** Field numbers are 1 to 2^29 - 1. */
const MAX_FIELD_NUMBER = 2 ** 29 - 1;
/** Nested messages deeper than this are refused rather than walked recursively without bound. */
const MAX_DEPTH = 32;

/** How one known field may appear on the wire. */
interface FieldRule {
  /** Wire type of one value; a packed repeated scalar may also come length-delimited. */
  readonly wireType: number;
  readonly packable: boolean;
  /** For varints: the largest value the field's type holds (uint32 is 2^32 - 1; others take 64 bits). */
  readonly max32: boolean;
  readonly utf8: boolean;
  readonly message: WireShape | undefined;
}

/** The fields of one message, by number, as the wire carries them. */
export interface WireShape {
  readonly name: string;
  readonly fields: ReadonlyMap<number, FieldRule>;
}

/** The shape of a message (and of the messages nested in it) from its descriptor. */
export function wireShapeOf(message: DescMessage, known = new Map<string, WireShape>()): WireShape {
  const existing = known.get(message.typeName);
  if (existing !== undefined) return existing;
  const fields = new Map<number, FieldRule>();
  const shape: WireShape = { name: message.typeName, fields };
  known.set(message.typeName, shape);
  for (const field of message.fields) fields.set(field.number, ruleOf(field, known));
  return shape;
}

function ruleOf(field: DescField, known: Map<string, WireShape>): FieldRule {
  const nested = (desc: DescMessage): FieldRule => ({
    wireType: LENGTH_DELIMITED,
    packable: false,
    max32: false,
    utf8: false,
    message: wireShapeOf(desc, known),
  });
  switch (field.fieldKind) {
    case 'message':
      return nested(field.message);
    case 'map':
      // A map field is a repeated entry message; its descriptor is not exposed as a message of the file.
      return { wireType: LENGTH_DELIMITED, packable: false, max32: false, utf8: false, message: undefined };
    case 'enum':
      return { wireType: VARINT, packable: false, max32: false, utf8: false, message: undefined };
    case 'scalar':
      return scalarRule(field.scalar, false);
    case 'list':
      if (field.listKind === 'message') return nested(field.message);
      if (field.listKind === 'enum') {
        return { wireType: VARINT, packable: true, max32: false, utf8: false, message: undefined };
      }
      return scalarRule(field.scalar, true);
  }
}

function scalarRule(scalar: ScalarType, repeated: boolean): FieldRule {
  const base = { utf8: false, max32: false, message: undefined };
  switch (scalar) {
    case ScalarType.STRING:
      return { ...base, wireType: LENGTH_DELIMITED, packable: false, utf8: true };
    case ScalarType.BYTES:
      return { ...base, wireType: LENGTH_DELIMITED, packable: false };
    case ScalarType.DOUBLE:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return { ...base, wireType: FIXED64, packable: repeated };
    case ScalarType.FLOAT:
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
      return { ...base, wireType: FIXED32, packable: repeated };
    case ScalarType.UINT32:
      return { ...base, wireType: VARINT, packable: repeated, max32: true };
    default:
      return { ...base, wireType: VARINT, packable: repeated };
  }
}

/** Why `bytes` is not a valid encoding of a `shape` message, or null when it is. */
export function findMalformation(bytes: Uint8Array, shape: WireShape): string | null {
  const reader = new WireReader(bytes);
  try {
    checkMessage(reader, bytes.length, shape, 0);
    return null;
  } catch (error) {
    if (error instanceof Malformed) return `${shape.name}: ${error.message}`;
    throw error;
  }
}

class Malformed extends Error {}

function checkMessage(reader: WireReader, end: number, shape: WireShape, depth: number): void {
  if (depth > MAX_DEPTH) throw new Malformed(`messages nested deeper than ${MAX_DEPTH}`);
  while (reader.pos < end) {
    const at = reader.pos;
    const tag = reader.varint(end);
    const fieldNumber = Math.floor(tag / 8);
    const wireType = tag % 8;
    if (fieldNumber < 1 || fieldNumber > MAX_FIELD_NUMBER) {
      throw new Malformed(`field number ${fieldNumber} at byte ${at} is not in 1..${MAX_FIELD_NUMBER}`);
    }
    const rule = shape.fields.get(fieldNumber);
    if (rule !== undefined && wireType !== rule.wireType && !(rule.packable && wireType === LENGTH_DELIMITED)) {
      throw new Malformed(`field ${fieldNumber} at byte ${at} has wire type ${wireType}, not ${rule.wireType}`);
    }
    switch (wireType) {
      case VARINT: {
        const value = reader.varint(end);
        if (rule?.max32 && value > 0xffffffff) throw new Malformed(`field ${fieldNumber} does not fit 32 bits`);
        break;
      }
      case FIXED64:
        reader.skip(8, end);
        break;
      case FIXED32:
        reader.skip(4, end);
        break;
      case LENGTH_DELIMITED: {
        const length = reader.varint(end);
        const start = reader.pos;
        if (length > end - start) {
          throw new Malformed(`field ${fieldNumber} at byte ${at} claims ${length} bytes; ${end - start} remain`);
        }
        const valueEnd = start + length;
        if (rule?.message !== undefined) {
          checkMessage(reader, valueEnd, rule.message, depth + 1);
        } else if (rule?.utf8 && !isUtf8(reader.bytes.subarray(start, valueEnd))) {
          throw new Malformed(`field ${fieldNumber} is not valid UTF-8`);
        } else if (rule !== undefined && rule.wireType !== LENGTH_DELIMITED) {
          checkPacked(reader, valueEnd, rule, fieldNumber);
        }
        reader.pos = valueEnd;
        break;
      }
      default:
        // 3 and 4 are groups, which proto3 never uses; 6 and 7 do not exist.
        throw new Malformed(`wire type ${wireType} at byte ${at} (field ${fieldNumber}) is not allowed`);
    }
  }
}

function checkPacked(reader: WireReader, end: number, rule: FieldRule, fieldNumber: number): void {
  if (rule.wireType === VARINT) {
    while (reader.pos < end) {
      const value = reader.varint(end);
      if (rule.max32 && value > 0xffffffff) throw new Malformed(`field ${fieldNumber} does not fit 32 bits`);
    }
    return;
  }
  const size = rule.wireType === FIXED64 ? 8 : 4;
  if ((end - reader.pos) % size !== 0)
    throw new Malformed(`packed field ${fieldNumber} is not a whole number of values`);
}

/** Reads varints strictly: at most 10 bytes, the tenth holding only the 64th bit, never past `end`. */
class WireReader {
  readonly bytes: Uint8Array;
  pos = 0;

  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
  }

  /** The varint at pos as a number (exact below 2^53; larger values only need comparing). */
  varint(end: number): number {
    const at = this.pos;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= end) throw new Malformed(`varint at byte ${at} runs past the end`);
      const byte = this.bytes[this.pos++] as number;
      if (i === 9 && byte > 1) throw new Malformed(`varint at byte ${at} is longer than 64 bits`);
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
    }
    throw new Malformed(`varint at byte ${at} is longer than 10 bytes`);
  }

  skip(count: number, end: number): void {
    if (end - this.pos < count) throw new Malformed(`a ${count}-byte value at byte ${this.pos} runs past the end`);
    this.pos += count;
  }
}
