// IP address, CIDR and port parsing with the same acceptance rules as Go's net/netip and strconv,
// because Istio validates its annotations with those; canonical output so equal networks compare equal.
import type { Cidr } from './types';

export interface IpAddress {
  family: 4 | 6;
  /** 4 or 16 bytes, network order. */
  bytes: Uint8Array;
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: string };

const ok = <T>(value: T): ParseResult<T> => ({ ok: true, value });
const fail = <T>(error: string): ParseResult<T> => ({ ok: false, error });

function parseIPv4Bytes(s: string, into: Uint8Array, at: number): string | null {
  const fields = s.split('.');
  if (fields.length !== 4) return 'IPv4 address must have 4 fields';
  for (let i = 0; i < 4; i++) {
    const f = fields[i] as string;
    if (f.length === 0) return 'IPv4 field must have at least one digit';
    if (f.length > 3 || !/^[0-9]+$/.test(f)) return `unexpected character in IPv4 field ${JSON.stringify(f)}`;
    if (f.length > 1 && f[0] === '0') return 'IPv4 field has octet with leading zero';
    const v = Number(f);
    if (v > 255) return 'IPv4 field has value >255';
    into[at + i] = v;
  }
  return null;
}

function parseIPv6(s: string): ParseResult<IpAddress> {
  if (s.includes('%')) return fail('IPv6 zones are not allowed here');
  const bytes = new Uint8Array(16);
  const halves = s.split('::');
  if (halves.length > 2) return fail('multiple :: in address');
  const parseGroups = (part: string): ParseResult<number[]> => {
    if (part === '') return ok([]);
    const groups = part.split(':');
    const out: number[] = [];
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i] as string;
      if (g.includes('.')) {
        if (i !== groups.length - 1) return fail('embedded IPv4 address must replace the final 2 fields');
        const v4 = new Uint8Array(4);
        const err = parseIPv4Bytes(g, v4, 0);
        if (err) return fail(err);
        out.push(((v4[0] as number) << 8) | (v4[1] as number), ((v4[2] as number) << 8) | (v4[3] as number));
        continue;
      }
      if (g.length === 0) return fail('empty IPv6 field');
      if (g.length > 4 || !/^[0-9a-fA-F]+$/.test(g)) return fail(`invalid IPv6 field ${JSON.stringify(g)}`);
      out.push(parseInt(g, 16));
    }
    return ok(out);
  };
  const head = parseGroups(halves[0] as string);
  if (!head.ok) return head;
  let groups: number[];
  if (halves.length === 2) {
    const tail = parseGroups(halves[1] as string);
    if (!tail.ok) return tail;
    const missing = 8 - head.value.length - tail.value.length;
    if (missing < 1) return fail('too many IPv6 fields around ::');
    groups = [...head.value, ...new Array<number>(missing).fill(0), ...tail.value];
  } else {
    groups = head.value;
    if (groups.length !== 8) return fail('IPv6 address too short');
  }
  groups.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  return ok({ family: 6, bytes });
}

/** Like Go's netip.ParseAddr without zones. */
export function parseIp(s: string): ParseResult<IpAddress> {
  if (s.length === 0) return fail('empty address');
  for (const ch of s) {
    if (ch === '.') {
      const bytes = new Uint8Array(4);
      const err = parseIPv4Bytes(s, bytes, 0);
      return err ? fail(err) : ok({ family: 4, bytes });
    }
    if (ch === ':') return parseIPv6(s);
    if (ch === '%') return fail('missing IPv6 address');
  }
  return fail('unable to parse IP');
}

function isV4Mapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** RFC 5952 text: lower case, longest zero run (≥2 groups, first on a tie) as `::`; v4-mapped as ::ffff:a.b.c.d. */
export function formatIp(ip: IpAddress): string {
  const b = ip.bytes;
  if (ip.family === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (isV4Mapped(b)) return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(((b[2 * i] as number) << 8) | (b[2 * i + 1] as number));
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (g: number) => g.toString(16);
  if (bestStart < 0) return groups.map(hex).join(':');
  const left = groups.slice(0, bestStart).map(hex).join(':');
  const right = groups.slice(bestStart + bestLen).map(hex).join(':');
  return `${left}::${right}`;
}

/** Like Go's netip.ParsePrefix (Go ≥1.22: no leading zeros or signs in the length), then canonicalised. */
export function parseCidr(s: string): ParseResult<Cidr> {
  const slash = s.lastIndexOf('/');
  if (slash < 0) return fail(`no '/' in ${JSON.stringify(s)}`);
  const addrPart = s.slice(0, slash);
  const bitsPart = s.slice(slash + 1);
  if (addrPart.includes('%')) return fail('IPv6 zones cannot be present in a prefix');
  const ip = parseIp(addrPart);
  if (!ip.ok) return fail(`bad address ${JSON.stringify(addrPart)}: ${ip.error}`);
  if (!/^(0|[1-9][0-9]*)$/.test(bitsPart)) return fail(`bad bits after slash: ${JSON.stringify(bitsPart)}`);
  const bits = Number(bitsPart);
  const max = ip.value.family === 4 ? 32 : 128;
  if (bits > max) return fail(`prefix length ${bits} out of range for IPv${ip.value.family} (max ${max})`);
  return ok(toCidr(ip.value, bits));
}

/** The network containing `ip` with `prefix` bits, host bits cleared. */
export function toCidr(ip: IpAddress, prefix: number): Cidr {
  const masked = new Uint8Array(ip.bytes);
  for (let i = 0; i < masked.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - 8 * i));
    masked[i] = (masked[i] as number) & ((0xff << (8 - keep)) & 0xff);
  }
  return { family: ip.family, address: formatIp({ family: ip.family, bytes: masked }), prefix };
}

export function formatCidr(c: Cidr): string {
  return `${c.address}/${c.prefix}`;
}

export function compareCidrs(a: Cidr, b: Cidr): number {
  if (a.family !== b.family) return a.family - b.family;
  const ab = (parseIp(a.address) as { value: IpAddress }).value.bytes;
  const bb = (parseIp(b.address) as { value: IpAddress }).value.bytes;
  for (let i = 0; i < ab.length; i++) if (ab[i] !== bb[i]) return (ab[i] as number) - (bb[i] as number);
  return a.prefix - b.prefix;
}

/** Sorted, de-duplicated copy: the canonical order makes fingerprints independent of annotation order. */
export function canonicalCidrs(list: Cidr[]): Cidr[] {
  const seen = new Map<string, Cidr>();
  for (const c of list) seen.set(formatCidr(c), c);
  return [...seen.values()].sort(compareCidrs);
}

/** Like Go's strconv.ParseUint(s, 10, 16) on the trimmed text, which is how Istio reads a port. */
export function parsePort(s: string): ParseResult<number> {
  const t = s.trim();
  if (!/^[0-9]+$/.test(t)) return fail(`invalid syntax: ${JSON.stringify(s)}`);
  const v = Number(t);
  if (v > 65535) return fail(`value out of range: ${t} (max 65535)`);
  return ok(v);
}

export function canonicalPorts(ports: Iterable<number>): number[] {
  return [...new Set(ports)].sort((a, b) => a - b);
}
