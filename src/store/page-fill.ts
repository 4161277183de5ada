/**
 * How full an LMDB store's leaf pages are against the same entries written in key order, estimated without
 * reading the whole store: LMDB counts the entries and leaf pages in the tree's root; the size of an entry
 * comes from a sample of the first ones. A store filled in random key order (a replica applying a topic) has
 * leaf pages about 2/3 full; one written in key order (a restore, `kvs2 compact`) nearly full.
 */
export interface PageFill {
  readonly entries: number;
  readonly leafPages: number;
  /** Leaf pages the entries would take written in key order (pages filled up), as estimated. */
  readonly keyOrderedLeafPages: number;
}

/**
 * Below this fill a key-ordered rewrite pays (gives back disk and memory): a store read from a topic or filled by
 * random writes estimates at about 0.67, a key-ordered one at about 0.97–0.99.
 */
export const REWRITE_PAYS_BELOW_FILL = 0.85;

/** Bytes of an LMDB page header (PAGEHDRSZ), and of a leaf node's header (NODESIZE) and index slot. */
const PAGE_HEADER_BYTES = 16;
const NODE_HEADER_BYTES = 8;
const INDEX_SLOT_BYTES = 2;

/**
 * Leaf pages `entries` entries take in key order, given a sample of their key and value sizes. LMDB puts
 * a value on pages of its own (overflow) when a node would exceed `nodemax` (half a page's room, less an
 * index slot), leaving an 8-byte page number in the leaf.
 */
export function keyOrderedLeafPages(
  entries: number,
  pageSize: number,
  sample: ReadonlyArray<{ readonly keyBytes: number; readonly valueBytes: number }>,
): number {
  if (entries === 0 || sample.length === 0) return 0;
  const room = pageSize - PAGE_HEADER_BYTES;
  // LMDB's me_nodemax: a leaf must hold at least two nodes, each with its index slot.
  const nodeMax = (Math.floor(room / 2) & ~1) - INDEX_SLOT_BYTES;
  let bytes = 0;
  for (const { keyBytes, valueBytes } of sample) {
    const inLeaf = NODE_HEADER_BYTES + keyBytes + valueBytes > nodeMax ? 8 : valueBytes;
    // Nodes are aligned to 2 bytes.
    bytes += ((NODE_HEADER_BYTES + keyBytes + inLeaf + 1) & ~1) + INDEX_SLOT_BYTES;
  }
  return Math.ceil((entries * (bytes / sample.length)) / room);
}

/** The estimated share of the leaf pages a key-ordered rewrite would keep: 1 when already key-ordered. */
export function fillRatio(fill: PageFill): number {
  return fill.leafPages === 0 ? 1 : Math.min(1, fill.keyOrderedLeafPages / fill.leafPages);
}
