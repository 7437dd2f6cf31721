// Addresses and networks written exactly as iptables-save prints them, so rendered rules can be
// compared with what the kernel reports without a second, lossy normaliser. Parsing, masking and
// the RFC 5952 text are the core's; only glibc's one departure from RFC 5952 lives here.

import { formatCidr, parseIp, toCidr, type Cidr, type IpAddress } from '@shunt/core';

export type Family = 4 | 6;

function parseAddress(address: string, family: Family): IpAddress {
  const r = parseIp(address);
  if (r.ok && r.value.family === family) return r.value;
  throw new Error(`${JSON.stringify(address)} is not an IPv${family} address${r.ok ? '' : ` (${r.error})`}`);
}

/** IPv4-compatible (::a.b.c.d): 96 zero bits and a non-zero seventh word (so not `::` or `::1`). */
function isV4Compatible(b: Uint8Array): boolean {
  return b.subarray(0, 12).every((x) => x === 0) && (b[12] !== 0 || b[13] !== 0);
}

/**
 * glibc's inet_ntop (and so iptables-save) agrees with RFC 5952 except that it also prints
 * IPv4-compatible addresses with a dotted tail (`::127.0.0.53`, not `::7f00:35`).
 */
function savedText(network: Cidr): string {
  if (network.family === 6) {
    const b = parseAddress(network.address, 6).bytes;
    if (isV4Compatible(b)) return `::${b[12]}.${b[13]}.${b[14]}.${b[15]}/${network.prefix}`;
  }
  return formatCidr(network);
}

/**
 * `address/prefix` with host bits cleared, in iptables-save's spelling. Throws a plain message
 * (the caller adds which pod and field) when the text is not a network of `family`.
 */
export function networkText(address: string, prefix: number, family: Family): string {
  const ip = parseAddress(address, family);
  const bits = family === 4 ? 32 : 128;
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > bits) throw new Error(`prefix ${prefix} is not 0..${bits}`);
  return savedText(toCidr(ip, prefix));
}

/** A host address as a full-length network (`/32`, `/128`). */
export function hostText(address: string, family: Family): string {
  return networkText(address, family === 4 ? 32 : 128, family);
}

/** Loopback-range test used for Istio's "include list contains loopback" rule. */
export function isLoopback(address: string, family: Family): boolean {
  const r = parseIp(address);
  if (!r.ok || r.value.family !== family) return false;
  const b = r.value.bytes;
  return family === 4 ? b[0] === 127 : b.subarray(0, 15).every((x) => x === 0) && b[15] === 1;
}
