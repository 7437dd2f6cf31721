import { supportFromRules, type NodeCapabilities, type Support } from '@shunt/core';

/** Support of the tc backend: core's SUPPORT_RULES.tc (kernel floor + probed features). */
export function tcSupport(caps: NodeCapabilities): Support {
  return supportFromRules('tc', caps);
}
