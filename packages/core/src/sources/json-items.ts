// Splits the bytes of a top-level JSON array into the spans of its items, without parsing them.
//
// Why: a pods file of 10,000 pods is rewritten whole for every change. JSON.parse of the whole file
// builds ~40 MB of objects per reading only to find that 9,999 entries are the same as before; the
// garbage made the agent's RSS grow to half a gigabyte over a few rewrites. With the items' texts,
// the source digests each item and parses only the ones whose digest it has not seen (pods-file.ts).
//
// The scan checks the structure between items (`[`, commas, `]`, whitespace only), tracks strings
// and escapes, and balances brackets; it does not check an item's own syntax (JSON.parse of that
// item does, and an unchanged item parsed before). Anything it does not recognise returns
// undefined, and the caller parses the whole text the usual way (which also gives the error
// message), so the fast path never accepts a file the plain one would refuse.

/**
 * Offsets [start, end) of each item of the array in the file's bytes, from `from` (after a BOM), or
 * undefined when the bytes are not a plain JSON array. Bytes, not text: every structural character
 * of UTF-8 JSON is ASCII and no byte of a multi-byte character is, so the reader digests and parses
 * items straight from the buffer and a reading of a 15 MB file makes no 15 MB string.
 */
export function jsonArrayItems(buf: Uint8Array, from = 0): Array<[number, number]> | undefined {
  const n = buf.length;
  let i = skipWs(buf, from);
  if (buf[i] !== 0x5b /* [ */) return undefined;
  i = skipWs(buf, i + 1);
  const items: Array<[number, number]> = [];
  if (buf[i] === 0x5d /* ] */) return skipWs(buf, i + 1) === n ? items : undefined;
  for (;;) {
    const start = i;
    let depth = 0;
    let inString = false;
    for (; i < n; i++) {
      const c = buf[i]!;
      if (inString) {
        if (c === 0x5c /* \ */) i++;
        else if (c === 0x22 /* " */) inString = false;
        continue;
      }
      if (c === 0x22) inString = true;
      else if (c === 0x7b /* { */ || c === 0x5b /* [ */) depth++;
      else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
        if (depth === 0) {
          if (c === 0x5d) break;
          return undefined;
        }
        depth--;
      } else if (c === 0x2c /* , */ && depth === 0) break;
    }
    if (i >= n || inString || depth !== 0) return undefined;
    let end = i;
    while (end > start && isWs(buf[end - 1]!)) end--;
    if (end === start) return undefined;
    items.push([start, end]);
    if (buf[i] === 0x5d) return skipWs(buf, i + 1) === n ? items : undefined;
    i = skipWs(buf, i + 1);
  }
}

function skipWs(buf: Uint8Array, i: number): number {
  while (i < buf.length && isWs(buf[i]!)) i++;
  return i;
}

const isWs = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
