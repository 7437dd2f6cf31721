// Address plan of one run. Every run owns one /24 of 198.18.0.0/15 (512 of them), chosen from its
// run id, and the matching 2001:db8:<block>::/48; concurrent runs pick different blocks.
//
//   node i (i < 3):  pods 198.18.B.(64i)/26, bridge = .64i+1, pod k = .64i+2+k
//                    2001:db8:B::/48 -> node i pods 2001:db8:B:i::/64, bridge ::1, pod ::(k+2)
//   node links:      198.18.B.(192+4p)/30 and 2001:db8:B:ff0p::/64 for node pair p

export const MAX_NODES = 3;
export const MAX_PODS_PER_NODE = 60;
export const BLOCKS = 512;
const BASE_V4 = (198 << 24) | (18 << 16); // 198.18.0.0

export function ipv4ToString(n: number): string {
  return [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** RFC 5952 form (what the kernel and every tool print), e.g. 2001:db8:1:0::2 -> 2001:db8:1::2. */
export function canonicalIpv6(address: string): string {
  return new URL(`http://[${address}]/`).hostname.slice(1, -1);
}

export function blockOfRunId(runId: string): number {
  const n = parseInt(runId, 16);
  if (!/^[0-9a-f]{4}$/.test(runId) || Number.isNaN(n)) throw new Error(`invalid run id ${JSON.stringify(runId)}: want 4 hex digits`);
  return n % BLOCKS;
}

export interface NodeAddressing {
  podCidrV4: string;
  podCidrV6: string;
  gatewayV4: string;
  gatewayV6: string;
  prefixV4: number;
  prefixV6: number;
}

export interface LinkAddressing {
  /** Addresses of the two ends: [lower node index, higher node index]. */
  v4: [string, string];
  v6: [string, string];
  prefixV4: number;
  prefixV6: number;
}

export class AddressPlan {
  readonly blockV4: number;
  constructor(readonly block: number) {
    if (!Number.isInteger(block) || block < 0 || block >= BLOCKS) throw new Error(`address block ${block} outside 0..${BLOCKS - 1}`);
    this.blockV4 = BASE_V4 + block * 256;
  }

  get cidrV4(): string {
    return `${ipv4ToString(this.blockV4)}/24`;
  }

  get cidrV6(): string {
    return `2001:db8:${this.block.toString(16)}::/48`;
  }

  private v6(suffix: string): string {
    return canonicalIpv6(`2001:db8:${this.block.toString(16)}:${suffix}`);
  }

  node(i: number): NodeAddressing {
    if (i < 0 || i >= MAX_NODES) throw new Error(`node index ${i} outside 0..${MAX_NODES - 1}`);
    const net = this.blockV4 + i * 64;
    return {
      podCidrV4: `${ipv4ToString(net)}/26`,
      podCidrV6: `${this.v6(`${i}::`)}/64`, // canonical form of the network
      gatewayV4: ipv4ToString(net + 1),
      gatewayV6: this.v6(`${i}::1`),
      prefixV4: 26,
      prefixV6: 64,
    };
  }

  pod(nodeIndex: number, k: number): { v4: string; v6: string } {
    if (k < 0 || k >= MAX_PODS_PER_NODE) throw new Error(`pod index ${k} on node ${nodeIndex} outside 0..${MAX_PODS_PER_NODE - 1}`);
    const n = this.node(nodeIndex);
    void n;
    return {
      v4: ipv4ToString(this.blockV4 + nodeIndex * 64 + 2 + k),
      v6: this.v6(`${nodeIndex}::${(k + 2).toString(16)}`),
    };
  }

  /** Addresses of the point-to-point link between nodes i < j. */
  link(i: number, j: number): LinkAddressing {
    const p = pairIndex(i, j);
    const net = this.blockV4 + 192 + 4 * p;
    return {
      v4: [ipv4ToString(net + 1), ipv4ToString(net + 2)],
      v6: [this.v6(`ff0${p}::1`), this.v6(`ff0${p}::2`)],
      prefixV4: 30,
      prefixV6: 64,
    };
  }
}

function pairIndex(i: number, j: number): number {
  if (!(i < j) || j >= MAX_NODES) throw new Error(`bad node pair ${i},${j}`);
  // (0,1)=0 (0,2)=1 (1,2)=2
  return i === 0 ? j - 1 : 2;
}
