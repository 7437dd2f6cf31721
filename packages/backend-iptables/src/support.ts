// Whether the node can run this backend: the core's reference rule for `iptables` (a working
// legacy or nft variant, found by the core probe's functional test in a scratch netns), plus, when
// a variant is forced by option, that this variant works. Both profiles are served: sidecar pods
// get istio-iptables' rules, ambient pods istio-cni's in-pod rules (render-ambient.ts).

import { supportFromRules, type NodeCapabilities, type ProfileName, type Support } from '@shunt/core';
import type { IptablesVariant } from './options';


export function chooseVariant(caps: NodeCapabilities, forced?: IptablesVariant): IptablesVariant | null {
  if (forced) return caps.features[`iptables:${forced}`]?.available ? forced : null;
  return caps.iptablesVariant;
}

export function iptablesSupport(caps: NodeCapabilities, forced?: IptablesVariant, _profile?: ProfileName): Support {
  const base = supportFromRules('iptables', caps);
  const reasons = base.ok ? [] : [...base.reasons];
  if (forced && !caps.features[`iptables:${forced}`]?.available) {
    reasons.push(`iptables-${forced} was forced but does not work here: ${caps.features[`iptables:${forced}`]?.evidence ?? 'not probed'}`);
  }
  if (reasons.length === 0 && !chooseVariant(caps, forced)) reasons.push('the node probe chose no iptables variant');
  return reasons.length === 0 ? { ok: true } : { ok: false, reasons };
}

/** TPROXY pods additionally need the TPROXY target; REDIRECT pods do not. */
export function tproxyUnavailableReason(caps: NodeCapabilities): string | undefined {
  const f = caps.features['iptables:tproxy'];
  return f?.available ? undefined : `the TPROXY target is not available on this node (${f?.evidence ?? 'not probed'})`;
}
