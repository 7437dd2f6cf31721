// Addresses and networks written exactly as iptables-save prints them, so rendered rules can be
// compared with what the kernel reports without a second, lossy normaliser.

export type Family = 4 | 6;

function parseV4(s: string): number[] | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  const out: number[] = [];
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    out.push(n);
  }
  return out;
}

/** 16 bytes of an IPv6 address (with optional embedded dotted IPv4 tail), or null. */
function parseV6(s: string): number[] | null {
  if (!/^[0-9a-fA-F:.]+$/.test(s) || s.length > 45) return null;
  let text = s;
  if (s.includes('.')) {
    // Rewrite a dotted IPv4 tail as two hex words, then parse as usual.
    const lastColon = s.lastIndexOf(':');
    const v4 = parseV4(s.slice(lastColon + 1));
    if (!v4) return null;
    text = `${s.slice(0, lastColon + 1)}${((v4[0]! << 8) | v4[1]!).toString(16)}:${((v4[2]! << 8) | v4[3]!).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const words = (h: string): number[] | null => {
    if (h === '') return [];
    const out: number[] = [];
    for (const w of h.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(w)) return null;
      out.push(parseInt(w, 16));
    }
    return out;
  };
  const head = words(halves[0]!);
  const rest = halves.length === 2 ? words(halves[1]!) : [];
  if (!head || !rest) return null;
  const given = head.length + rest.length;
  let all: number[];
  if (halves.length === 2) {
    if (given > 7) return null;
    all = [...head, ...new Array<number>(8 - given).fill(0), ...rest];
  } else {
    if (given !== 8) return null;
    all = head;
  }
  const bytes: number[] = [];
  for (const w of all) bytes.push(w >> 8, w & 0xff);
  return bytes;
}

/** The textual form glibc's inet_ntop gives (and so iptables-save prints). */
function formatV6(bytes: number[]): string {
  const w: number[] = [];
  for (let i = 0; i < 16; i += 2) w.push((bytes[i]! << 8) | bytes[i + 1]!);
  // Longest run of zero words, at least two long; the first one wins a tie.
  let bestBase = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) {
      bestBase = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestLen < 2) bestBase = -1;
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (bestBase !== -1 && i >= bestBase && i < bestBase + bestLen) {
      if (i === bestBase) out += ':';
      continue;
    }
    if (i !== 0) out += ':';
    // glibc prints IPv4-compatible (::a.b.c.d) and IPv4-mapped (::ffff:a.b.c.d) tails dotted.
    if (i === 6 && bestBase === 0 && (bestLen === 6 || (bestLen === 5 && w[5] === 0xffff))) {
      out += `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
      break;
    }
    out += w[i]!.toString(16);
  }
  if (bestBase !== -1 && bestBase + bestLen === 8) out += ':';
  return out;
}

export function familyOfAddress(s: string): Family | null {
  if (parseV4(s)) return 4;
  if (parseV6(s)) return 6;
  return null;
}

/**
 * `address/prefix` with host bits cleared, in iptables-save's spelling. Throws a plain message
 * (the caller adds which pod and field) when the text is not a network of `family`.
 */
export function networkText(address: string, prefix: number, family: Family): string {
  const bytes = family === 4 ? parseV4(address) : parseV6(address);
  if (!bytes) throw new Error(`${JSON.stringify(address)} is not an IPv${family} address`);
  const bits = family === 4 ? 32 : 128;
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > bits) throw new Error(`prefix ${prefix} is not 0..${bits}`);
  const masked = bytes.map((b, i) => {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    return b & ((0xff << (8 - keep)) & 0xff);
  });
  return `${family === 4 ? masked.join('.') : formatV6(masked)}/${prefix}`;
}

/** A host address as a full-length network (`/32`, `/128`). */
export function hostText(address: string, family: Family): string {
  return networkText(address, family === 4 ? 32 : 128, family);
}

/** Loopback-range test used for Istio's "include list contains loopback" rule. */
export function isLoopback(address: string, family: Family): boolean {
  if (family === 4) return parseV4(address)?.[0] === 127;
  const b = parseV6(address);
  return !!b && b.slice(0, 15).every((x) => x === 0) && b[15] === 1;
}
