/**
 * Struct codecs: describe a C key/value struct field by field and get encode/decode to
 * Buffers of exactly the C size. Fields are laid out in the order given with no implicit
 * padding, so C's alignment holes must be spelled out with pad(n); map.typed() checks
 * the total against the map's BTF-derived sizes, which catches a forgotten hole.
 *
 * Integers are in host byte order (what BPF programs see in map memory); be16/be32,
 * ipv4 and ipv6 are stored in network byte order.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { invalidArgument } from './errors';

export interface Codec<T> {
  readonly size: number;
  encode(value: T): Buffer;
  decode(buf: Buffer): T;
}

export interface Field<T> extends Codec<T> {
  readonly kind: string;
  read(buf: Buffer, offset: number): T;
  write(buf: Buffer, offset: number, value: T): void;
}

const LITTLE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function field<T>(kind: string, size: number, read: Field<T>['read'], write: Field<T>['write']): Field<T> {
  return {
    kind,
    size,
    read,
    write,
    encode(value: T): Buffer {
      const buf = Buffer.alloc(size);
      write(buf, 0, value);
      return buf;
    },
    decode(buf: Buffer): T {
      if (buf.length < size) throw invalidArgument('decode', kind, `buffer is ${buf.length} bytes, need ${size}`);
      return read(buf, 0);
    },
  };
}

function checkInt(kind: string, value: number, max: number): number {
  if (!Number.isInteger(value) || value < 0 || value > max)
    throw invalidArgument('encode', kind, `value ${String(value)} is not an integer in 0..${max}`);
  return value;
}

export const u8: Field<number> = field(
  'u8',
  1,
  (b, o) => b.readUInt8(o),
  (b, o, v) => void b.writeUInt8(checkInt('u8', v, 0xff), o),
);
export const u16: Field<number> = field(
  'u16',
  2,
  (b, o) => (LITTLE ? b.readUInt16LE(o) : b.readUInt16BE(o)),
  (b, o, v) => void (LITTLE ? b.writeUInt16LE(checkInt('u16', v, 0xffff), o) : b.writeUInt16BE(checkInt('u16', v, 0xffff), o)),
);
export const u32: Field<number> = field(
  'u32',
  4,
  (b, o) => (LITTLE ? b.readUInt32LE(o) : b.readUInt32BE(o)),
  (b, o, v) =>
    void (LITTLE
      ? b.writeUInt32LE(checkInt('u32', v, 0xffffffff), o)
      : b.writeUInt32BE(checkInt('u32', v, 0xffffffff), o)),
);
export const i32: Field<number> = field(
  'i32',
  4,
  (b, o) => (LITTLE ? b.readInt32LE(o) : b.readInt32BE(o)),
  (b, o, v) => void (LITTLE ? b.writeInt32LE(v, o) : b.writeInt32BE(v, o)),
);
export const u64: Field<bigint> = field(
  'u64',
  8,
  (b, o) => (LITTLE ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o)),
  (b, o, v) => void (LITTLE ? b.writeBigUInt64LE(BigInt(v), o) : b.writeBigUInt64BE(BigInt(v), o)),
);
export const be16: Field<number> = field(
  'be16',
  2,
  (b, o) => b.readUInt16BE(o),
  (b, o, v) => void b.writeUInt16BE(checkInt('be16', v, 0xffff), o),
);
export const be32: Field<number> = field(
  'be32',
  4,
  (b, o) => b.readUInt32BE(o),
  (b, o, v) => void b.writeUInt32BE(checkInt('be32', v, 0xffffffff), o),
);

/** IPv4 address as dotted text, stored as 4 bytes in network order (like __be32 addr). */
export const ipv4: Field<string> = field(
  'ipv4',
  4,
  (b, o) => `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`,
  (b, o, v) => {
    if (!isIPv4(v)) throw invalidArgument('encode', 'ipv4', `'${v}' is not an IPv4 address`);
    v.split('.').forEach((part, i) => (b[o + i] = Number(part)));
  },
);

/** IPv6 address as text, stored as 16 bytes in network order (struct in6_addr). */
export const ipv6: Field<string> = field(
  'ipv6',
  16,
  (b, o) => {
    const groups: string[] = [];
    for (let i = 0; i < 8; i++) groups.push(b.readUInt16BE(o + i * 2).toString(16));
    return compressIPv6(groups);
  },
  (b, o, v) => expandIPv6(v).copy(b, o),
);

function compressIPv6(groups: string[]): string {
  // Longest run of zero groups (length >= 2) becomes "::", as inet_ntop does.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestLen < 2) return groups.join(':');
  return `${groups.slice(0, bestStart).join(':')}::${groups.slice(bestStart + bestLen).join(':')}`;
}

function expandIPv6(text: string): Buffer {
  if (!isIPv6(text)) throw invalidArgument('encode', 'ipv6', `'${text}' is not an IPv6 address`);
  let addr = text;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(addr);
  if (v4?.[1]) {
    const p = v4[1].split('.').map(Number);
    addr = addr.slice(0, -v4[1].length) + `${(((p[0] ?? 0) << 8) | (p[1] ?? 0)).toString(16)}:${(((p[2] ?? 0) << 8) | (p[3] ?? 0)).toString(16)}`;
  }
  const [head = '', tail] = addr.split('::');
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const zeros = tail === undefined ? [] : new Array<string>(8 - h.length - t.length).fill('0');
  const groups = [...h, ...zeros, ...t];
  const buf = Buffer.alloc(16);
  groups.forEach((g, i) => buf.writeUInt16BE(parseInt(g, 16), i * 2));
  return buf;
}

/** Raw bytes of fixed length (shorter input is zero-filled, longer is an error). */
export function bytes(n: number): Field<Buffer> {
  return field(
    `bytes(${n})`,
    n,
    (b, o) => Buffer.from(b.subarray(o, o + n)),
    (b, o, v) => {
      if (v.length > n) throw invalidArgument('encode', `bytes(${n})`, `got ${v.length} bytes`);
      v.copy(b, o);
    },
  );
}

/** Padding/alignment hole: written as zeros, skipped on decode. */
export function pad(n: number): Field<undefined> {
  return field(
    `pad(${n})`,
    n,
    () => undefined,
    () => undefined,
  );
}

type FieldMap = Record<string, Field<unknown>>;
type NonPadKeys<S extends FieldMap> = { [K in keyof S]: S[K] extends Field<undefined> ? never : K }[keyof S];
export type StructValue<S extends FieldMap> = { [K in NonPadKeys<S>]: S[K] extends Field<infer T> ? T : never };

export interface StructCodec<T> extends Field<T> {
  /** Byte offset of each named field, for comparing with pahole/bpftool output. */
  readonly offsets: Readonly<Record<string, number>>;
}

export function struct<S extends FieldMap>(fields: S): StructCodec<StructValue<S>> {
  const layout: Array<{ name: string; f: Field<unknown>; offset: number }> = [];
  let size = 0;
  for (const [name, f] of Object.entries(fields)) {
    layout.push({ name, f, offset: size });
    size += f.size;
  }
  const offsets = Object.fromEntries(layout.map((l) => [l.name, l.offset]));
  const kind = `struct{${layout.map((l) => `${l.name}:${l.f.kind}`).join(',')}}`;
  const read = (b: Buffer, o: number): StructValue<S> => {
    const out: Record<string, unknown> = {};
    for (const l of layout) if (!l.f.kind.startsWith('pad(')) out[l.name] = l.f.read(b, o + l.offset);
    return out as StructValue<S>;
  };
  const write = (b: Buffer, o: number, v: StructValue<S>): void => {
    const rec = v as Record<string, unknown>;
    for (const l of layout) {
      if (l.f.kind.startsWith('pad(')) continue;
      if (rec[l.name] === undefined) throw invalidArgument('encode', kind, `field '${l.name}' is missing`);
      l.f.write(b, o + l.offset, rec[l.name]);
    }
  };
  return { ...field(kind, size, read, write), offsets };
}

const V4_MAPPED_PREFIX = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

/** 16-byte address as our BPF programs key it: IPv4 becomes ::ffff:a.b.c.d. */
export function encodeAddr(text: string): Buffer {
  if (isIPv4(text)) return Buffer.concat([V4_MAPPED_PREFIX, ipv4.encode(text)]);
  if (isIPv6(text)) return ipv6.encode(text);
  throw new Error(`'${text}' is not an IP address`);
}

export function decodeAddr(buf: Buffer): string {
  if (buf.subarray(0, 12).equals(V4_MAPPED_PREFIX)) return ipv4.decode(buf.subarray(12));
  return ipv6.decode(buf);
}

/** Fixed-size NUL-padded text field; longer text is an error (the caller names the field). */
export function encodeText(text: string, size: number): Buffer {
  const b = Buffer.from(text, 'utf8');
  if (b.length > size) throw new Error(`'${text}' is ${b.length} bytes, the field holds ${size}`);
  return b;
}

export function decodeText(buf: Buffer): string {
  const end = buf.indexOf(0);
  return buf.subarray(0, end < 0 ? buf.length : end).toString('utf8');
}
