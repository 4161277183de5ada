import fc from 'fast-check';
import type { MessageSchema } from './kvs2-request-schema.js';
import { END_GROUP_BYTE, lyingBytesField, tag, varint, WireType } from './protobuf-wire.js';

/**
 * fast-check generators of damage to a valid request encoding: the kinds of bytes issue 11 found
 * servers acting on (stray END_GROUP, field number 0, field numbers >= 2^29, wire types 3/4/6/7,
 * 11-byte varints, lengths past the end, known fields with the wrong wire type), plus plain byte flips,
 * truncations and well-formed unknown fields (which must still be accepted).
 */

/** A snippet of bytes to insert, with what it is for the failure report. */
export interface Snippet {
  readonly what: string;
  readonly bytes: Buffer;
}

/** One edit of an encoded request. Chunk-level edits apply to whole fields, byte-level ones after them. */
export type Edit =
  | { readonly op: 'insert-between-fields'; readonly boundary: number; readonly snippet: Snippet }
  | { readonly op: 'retag'; readonly chunk: number; readonly wireType: number }
  | { readonly op: 'insert'; readonly at: number; readonly snippet: Snippet }
  | { readonly op: 'flip'; readonly at: number; readonly mask: number }
  | { readonly op: 'truncate'; readonly at: number };

const TWO_POW_29 = 1n << 29n;

const payloadFor = (wireType: number): Buffer => {
  switch (wireType) {
    case WireType.VARINT:
      return varint(1);
    case WireType.I64:
      return Buffer.alloc(8, 1);
    case WireType.I32:
      return Buffer.alloc(4, 1);
    default:
      return Buffer.from([3, 0x61, 0x62, 0x63]);
  }
};

const smallField = fc.integer({ min: 1, max: 20 });

/** Snippets that make any body an invalid encoding, wherever they land between fields. */
export function invalidSnippet(schema: MessageSchema): fc.Arbitrary<Snippet> {
  const known = schema.fields.map((f) => ({
    number: f.number,
    expected: f.kind === 'varint' ? WireType.VARINT : WireType.LEN,
  }));
  return fc.oneof(
    fc.constant({ what: 'stray END_GROUP 0x0c', bytes: Buffer.of(END_GROUP_BYTE) }),
    fc.tuple(smallField, fc.constantFrom(WireType.START_GROUP, WireType.END_GROUP, 6, 7)).map(([field, wireType]) => ({
      what: `field ${field} with wire type ${wireType}`,
      bytes: Buffer.concat([tag(field, wireType), payloadFor(WireType.VARINT)]),
    })),
    fc.constantFrom(WireType.VARINT, WireType.LEN, WireType.I32, WireType.I64).map((wireType) => ({
      what: `field number 0, wire type ${wireType}`,
      bytes: Buffer.concat([tag(0, wireType), payloadFor(wireType)]),
    })),
    fc
      .tuple(
        fc.oneof(
          // Numbers that a decoder which truncates the key to 32 bits reads as a known field (a message
          // without fields, StatusRequest, has none: then field 1).
          fc.constantFrom(...(known.length > 0 ? known : [{ number: 1 }]).map((f) => TWO_POW_29 + BigInt(f.number))),
          fc.bigInt({ min: TWO_POW_29, max: (1n << 61n) - 1n }),
        ),
        fc.constantFrom(WireType.VARINT, WireType.LEN),
      )
      .map(([field, wireType]) => ({
        what: `field number ${field} (>= 2^29), wire type ${wireType}`,
        bytes: Buffer.concat([tag(field, wireType), payloadFor(wireType)]),
      })),
    fc
      .tuple(smallField, fc.bigInt({ min: 0n, max: (1n << 63n) - 1n }), fc.integer({ min: 11, max: 13 }))
      .map(([field, value, length]) => ({
        what: `field ${field} with a ${length}-byte varint`,
        bytes: Buffer.concat([tag(field, WireType.VARINT), varint(value, length)]),
      })),
    fc
      .tuple(smallField, fc.integer({ min: 1, max: 2 ** 31 }), fc.integer({ min: 0, max: 3 }))
      .map(([field, excess, present]) => ({
        what: `field ${field} whose length runs ${excess} bytes past the end`,
        bytes: lyingBytesField(field, present + excess, Buffer.alloc(present, 0x78)),
      })),
    // A message without fields (StatusRequest) has no known field to give the wrong wire type.
    ...(known.length === 0
      ? []
      : [
          fc
            .tuple(
              fc.constantFrom(...known),
              fc.constantFrom(WireType.VARINT, WireType.I64, WireType.LEN, WireType.I32),
            )
            .filter(([field, wireType]) => wireType !== field.expected)
            .map(([field, wireType]) => ({
              what: `known field ${field.number} with wire type ${wireType}`,
              bytes: Buffer.concat([tag(field.number, wireType), payloadFor(wireType)]),
            })),
        ]),
  );
}

/** Well-formed fields of numbers the message does not define: a valid body stays valid. */
export const unknownFieldSnippet: fc.Arbitrary<Snippet> = fc
  .tuple(
    fc.integer({ min: 100, max: 2 ** 29 - 1 }),
    fc.constantFrom(WireType.VARINT, WireType.I64, WireType.LEN, WireType.I32),
  )
  .map(([field, wireType]) => ({
    what: `unknown field ${field}, wire type ${wireType}`,
    bytes: Buffer.concat([tag(field, wireType), payloadFor(wireType)]),
  }));

const randomSnippet: fc.Arbitrary<Snippet> = fc
  .uint8Array({ minLength: 1, maxLength: 6 })
  .map((bytes) => ({ what: 'random bytes', bytes: Buffer.from(bytes) }));

export function edit(schema: MessageSchema): fc.Arbitrary<Edit> {
  const snippet = fc.oneof(
    { weight: 4, arbitrary: invalidSnippet(schema) },
    { weight: 1, arbitrary: unknownFieldSnippet },
    { weight: 1, arbitrary: randomSnippet },
  );
  return fc.oneof(
    { weight: 4, arbitrary: fc.record({ op: fc.constant('insert-between-fields'), boundary: fc.nat(), snippet }) },
    {
      weight: 1,
      arbitrary: fc.record({ op: fc.constant('retag'), chunk: fc.nat(), wireType: fc.integer({ min: 0, max: 7 }) }),
    },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('insert'), at: fc.nat(), snippet }) },
    {
      weight: 3,
      arbitrary: fc.record({ op: fc.constant('flip'), at: fc.nat(), mask: fc.integer({ min: 1, max: 255 }) }),
    },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('truncate'), at: fc.nat() }) },
  ) as fc.Arbitrary<Edit>;
}

/** One to three edits, or now and then none: the valid encoding itself, which must keep working. */
export function edits(schema: MessageSchema): fc.Arbitrary<Edit[]> {
  return fc.oneof(
    { weight: 1, arbitrary: fc.constant<Edit[]>([]) },
    { weight: 6, arbitrary: fc.array(edit(schema), { minLength: 1, maxLength: 3 }) },
  );
}

/** Applies edits to the field chunks of a canonical encoding and returns the body to send. */
export function applyEdits(fields: readonly Buffer[], list: readonly Edit[]): Buffer {
  const chunks: Buffer[] = fields.map((chunk) => Buffer.from(chunk));
  for (const e of list) {
    if (e.op === 'insert-between-fields') chunks.splice(e.boundary % (chunks.length + 1), 0, e.snippet.bytes);
    if (e.op === 'retag' && chunks.length > 0) {
      const chunk = chunks[e.chunk % chunks.length] as Buffer;
      // Canonical kvs2 request keys fit one byte (field numbers below 16), so this rewrites the whole key.
      if (chunk.length > 0) chunk[0] = ((chunk[0] as number) & ~7) | e.wireType;
    }
  }
  let body = Buffer.concat(chunks);
  for (const e of list) {
    if (e.op === 'insert') {
      const at = e.at % (body.length + 1);
      body = Buffer.concat([body.subarray(0, at), e.snippet.bytes, body.subarray(at)]);
    } else if (e.op === 'flip' && body.length > 0) {
      body = Buffer.from(body);
      const at = e.at % body.length;
      body[at] = (body[at] as number) ^ e.mask;
    } else if (e.op === 'truncate') {
      body = body.subarray(0, e.at % (body.length + 1));
    }
  }
  return body;
}
