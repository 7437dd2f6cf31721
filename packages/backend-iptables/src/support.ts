// Whether the node can run this backend. The core's probe already tried each variant in a scratch
// netns (append/delete a no-op rule, as istio-iptables does) and the TPROXY target; this only reads
// its answers. Written locally: the core exports no support helper yet.

import type { NodeCapabilities, Support } from '@shunt/core';
import type { IptablesVariant } from './options';

export function chooseVariant(caps: NodeCapabilities, forced?: IptablesVariant): IptablesVariant | null {
  if (forced) return caps.features[`iptables:${forced}`]?.available ? forced : null;
  return caps.iptablesVariant;
}

export function iptablesSupport(caps: NodeCapabilities, forced?: IptablesVariant): Support {
  const variant = chooseVariant(caps, forced);
  if (variant) return { ok: true };
  const reasons: string[] = [];
  if (forced) {
    const f = caps.features[`iptables:${forced}`];
    reasons.push(`iptables-${forced} was forced but does not work here: ${f?.evidence ?? 'not probed'}`);
  } else {
    for (const v of ['legacy', 'nft'] as const) {
      const f = caps.features[`iptables:${v}`];
      reasons.push(`iptables-${v}: ${f?.available ? 'works, but the probe chose no variant' : (f?.evidence ?? 'not probed')}`);
    }
  }
  return { ok: false, reasons };
}

/** TPROXY pods additionally need the TPROXY target; REDIRECT pods do not. */
export function tproxyUnavailableReason(caps: NodeCapabilities): string | undefined {
  const f = caps.features['iptables:tproxy'];
  return f?.available ? undefined : `the TPROXY target is not available on this node (${f?.evidence ?? 'not probed'})`;
}
