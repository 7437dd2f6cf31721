// Splits the text of a top-level JSON array into the texts of its items, without parsing them.
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

/** Offsets [start, end) of each item of the array, or undefined when the text is not a plain JSON array. */
export function jsonArrayItems(text: string): Array<[number, number]> | undefined {
  const n = text.length;
  let i = skipWs(text, 0);
  if (text.charCodeAt(i) !== 0x5b /* [ */) return undefined;
  i = skipWs(text, i + 1);
  const items: Array<[number, number]> = [];
  if (text.charCodeAt(i) === 0x5d /* ] */) return skipWs(text, i + 1) === n ? items : undefined;
  for (;;) {
    const start = i;
    let depth = 0;
    let inString = false;
    for (; i < n; i++) {
      const c = text.charCodeAt(i);
      if (inString) {
        if (c === 0x5c /* \ */) i++;
        else if (c === 0x22 /* " */) inString = false;
        continue;
      }
      if (c === 0x22) inString = true;
      else if (c === 0x7b /* { */ || c === 0x5b /* [ */) depth++;
      else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
        if (depth === 0) {
          if (c === 0x5d) break; // the array's own `]`
          return undefined;
        }
        depth--;
      } else if (c === 0x2c /* , */ && depth === 0) break;
    }
    if (i >= n || inString || depth !== 0) return undefined; // truncated
    let end = i;
    while (end > start && isWs(text.charCodeAt(end - 1))) end--;
    if (end === start) return undefined; // `[,` or `,,` or `,]`: let JSON.parse say so
    items.push([start, end]);
    if (text.charCodeAt(i) === 0x5d) return skipWs(text, i + 1) === n ? items : undefined;
    i = skipWs(text, i + 1); // after the comma
  }
}

const isWs = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

function skipWs(text: string, i: number): number {
  while (i < text.length && isWs(text.charCodeAt(i))) i++;
  return i;
}

/**
 * jsonArrayItems over the file's bytes (UTF-8: every structural character is ASCII, and no byte of
 * a multi-byte character is), from `from` (after a BOM): the reader digests and parses items from
 * the buffer, so a reading of a 15 MB file makes no 15 MB string.
 */
export function jsonArrayItemsBytes(buf: Uint8Array, from = 0): Array<[number, number]> | undefined {
  const n = buf.length;
  let i = skipWsBytes(buf, from);
  if (buf[i] !== 0x5b /* [ */) return undefined;
  i = skipWsBytes(buf, i + 1);
  const items: Array<[number, number]> = [];
  if (buf[i] === 0x5d /* ] */) return skipWsBytes(buf, i + 1) === n ? items : undefined;
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
    if (buf[i] === 0x5d) return skipWsBytes(buf, i + 1) === n ? items : undefined;
    i = skipWsBytes(buf, i + 1);
  }
}

function skipWsBytes(buf: Uint8Array, i: number): number {
  while (i < buf.length && isWs(buf[i]!)) i++;
  return i;
}
