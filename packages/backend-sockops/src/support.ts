/**
 * Can the sockops backend run on this node? The core's SUPPORT_RULES.sockops decide (floor 4.18 plus
 * every probed feature the programs in bpf/sockops need, each with what it is needed for), so the
 * selection table, `shunt doctor` and this backend give one answer. Nothing here is per instance.
 */
import { supportFromRules, type NodeCapabilities, type Support } from '@shunt/core';

export function sockopsSupport(caps: NodeCapabilities): Support {
  return supportFromRules('sockops', caps);
}
