// Naming of everything a run creates. All names start with the run's prefix so gc can find
// leftovers of crashed runs and never touch anything else.

export const TESTBED_PREFIX = 'shunt-tb-';
/** Interface-name prefix; with a 4-hex run id names stay well under IFNAMSIZ (15). */
export const IFACE_PREFIX = 'stb';

export const RUN_ID_RE = /^[0-9a-f]{4}$/;
export const POD_NAME_RE = /^[a-z0-9]([-a-z0-9]{0,18}[a-z0-9])?$/;

export function runPrefix(runId: string): string {
  return `${TESTBED_PREFIX}${runId}`;
}

export function nodeNetnsName(runId: string, node: string): string {
  return `${runPrefix(runId)}-node-${node}`;
}

export function podNetnsName(runId: string, pod: string): string {
  return `${runPrefix(runId)}-pod-${pod}`;
}

export function bridgeName(runId: string): string {
  return `${IFACE_PREFIX}${runId}br`;
}

export function hostVethName(runId: string, podIndex: number): string {
  return `${IFACE_PREFIX}${runId}p${podIndex}`;
}

export function nodeLinkName(runId: string, peerNodeIndex: number): string {
  return `${IFACE_PREFIX}${runId}n${peerNodeIndex}`;
}

/** The run id encoded in a testbed netns name, if it is one. */
export function runIdOfNetns(name: string): string | undefined {
  const m = /^shunt-tb-([0-9a-f]{4})-/.exec(name);
  return m ? m[1] : undefined;
}
