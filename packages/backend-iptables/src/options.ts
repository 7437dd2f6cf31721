// Knobs of the iptables backend that are not per-pod. Per-pod choices (ports, CIDRs, interception
// mode, DNS port) arrive already interpreted in the MeshPod.

import type { ProfileName } from '@shunt/core';
import type { NetnsCookieReader } from './netns-identity';

export type IptablesVariant = 'legacy' | 'nft';

export interface RenderOptions {
  /** fwmark TPROXY puts on inbound packets and the policy rule matches (Istio: 1337). */
  tproxyMark: number;
  /** Mark the proxy's own connections to its pod IP over lo get in TPROXY mode (Istio: 1338). */
  outboundMark: number;
  /** Routing table for the TPROXY `local default dev lo` route (Istio: 133). */
  tproxyTable: number;
  /**
   * DNS servers whose port-53 traffic is captured when the pod has a DNS port. Empty: every
   * destination on port 53 is captured (Istio's --capture-all-dns, what its CNI plugin does,
   * since a node agent cannot know the pod's resolv.conf).
   */
  dnsServers: { v4: string[]; v6: string[] };
}

export interface IptablesBackendOptions extends Partial<RenderOptions> {
  /** Force a variant; otherwise the node probe's `caps.iptablesVariant` decides. */
  variant?: IptablesVariant;
  /** Seconds iptables-legacy waits for the xtables lock (shared by every netns on the host). */
  lockWaitSeconds?: number;
  /** Kill an iptables/ip command that runs longer than this. */
  commandTimeoutMs?: number;
  /**
   * Directory of the per-pod records of what was installed (default /run/shunt/iptables), read
   * by start() so another process can observe and clean up. `null`: keep them in memory only
   * (bench/demo harnesses that must never adopt, or clean up, the node agent's pods).
   * One directory per backend instance that owns pods: a second instance sharing it adopts, and
   * with stop({cleanup:true}) removes, the first one's pods.
   */
  stateDir?: string | null;
  /** Reads a netns cookie (e.g. @shunt/libbpf `netnsCookie`) to tell a reused netns path apart; without it the nsfs inode is used. */
  netnsCookie?: NetnsCookieReader;
  /** The mesh profile the agent serves (both are served: sidecar and ambient rule sets). */
  profile?: ProfileName;
}

export const DEFAULT_RENDER_OPTIONS: RenderOptions = {
  tproxyMark: 1337,
  outboundMark: 1338,
  tproxyTable: 133,
  dnsServers: { v4: [], v6: [] },
};

export function renderOptionsFrom(opts: Partial<RenderOptions> = {}): RenderOptions {
  const r: RenderOptions = {
    tproxyMark: opts.tproxyMark ?? DEFAULT_RENDER_OPTIONS.tproxyMark,
    outboundMark: opts.outboundMark ?? DEFAULT_RENDER_OPTIONS.outboundMark,
    tproxyTable: opts.tproxyTable ?? DEFAULT_RENDER_OPTIONS.tproxyTable,
    dnsServers: {
      v4: [...(opts.dnsServers?.v4 ?? [])],
      v6: [...(opts.dnsServers?.v6 ?? [])],
    },
  };
  for (const [field, v] of [['tproxyMark', r.tproxyMark], ['outboundMark', r.outboundMark]] as const) {
    if (!Number.isInteger(v) || v < 1 || v > 0xffffffff) throw new Error(`iptables backend option ${field}=${v}: want an integer 1..0xffffffff`);
  }
  if (r.tproxyMark === r.outboundMark) throw new Error(`iptables backend options tproxyMark and outboundMark are both ${r.tproxyMark}: they must differ`);
  // 253-255 are the kernel's default/main/local tables; 0 is unspec.
  if (!Number.isInteger(r.tproxyTable) || r.tproxyTable < 1 || r.tproxyTable > 0xffffffff || [253, 254, 255].includes(r.tproxyTable)) {
    throw new Error(`iptables backend option tproxyTable=${r.tproxyTable}: want an integer 1..2^32-1 other than 253/254/255`);
  }
  return r;
}
