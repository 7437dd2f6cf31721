/** Shared pieces of the tc backend's kernel tests: MeshPods from the testbed, node context, netns reads. */
import { execFileSync } from 'node:child_process';
import { ISTIO_AMBIENT, ISTIO_SIDECAR, interpretPod, type Logger, type MeshPod, type NodeCapabilities, type NodeContext } from '@shunt/core';
import type { Testbed } from '@shunt/testbed';

export const silentLog: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** tb.kubePod() interpreted by the core's profile, as the agent would (ambient unless told). */
export function meshPod(tb: Testbed, name: string, profile: 'ambient' | 'sidecar' = 'ambient'): MeshPod {
  const kube = tb.kubePod(name);
  const r = interpretPod(kube, {}, profile === 'ambient' ? ISTIO_AMBIENT : ISTIO_SIDECAR, kube.shunt);
  if (!r.ok) throw r.error;
  return r.pod;
}

/**
 * cgroupRoot: where the splice pairing program attaches (a testbed node's cgroup, covering its
 * pods and a stand-in started there). Default '': no node cgroup, so splicing is off with a reason
 * and nothing is attached outside the test's own netns (tests of the datapath alone).
 */
export function nodeContext(bpffsRoot: string, opts: { readOnly?: boolean; cgroupRoot?: string } = {}): NodeContext {
  return {
    nodeName: 'node0',
    profile: 'istio-ambient',
    caps: {} as NodeCapabilities,
    cgroupRoot: opts.cgroupRoot ?? '',
    bpffsRoot,
    log: silentLog,
    ...(opts.readOnly ? { readOnly: true } : {}),
  };
}

/** tcx programs on the pod's eth0 in hook order, as bpftool reports them (names only). */
export function tcxPrograms(netnsPath: string, ifname = 'eth0'): { ingress: string[]; egress: string[] } {
  const out = execFileSync('nsenter', [`--net=${netnsPath}`, 'bpftool', '-j', 'net', 'show', 'dev', ifname], { encoding: 'utf8' });
  const parsed = JSON.parse(out) as Array<{ tc?: Array<{ devname: string; kind: string; name: string }> }>;
  const tc = parsed.flatMap((e) => e.tc ?? []);
  return {
    ingress: tc.filter((t) => t.kind === 'tcx/ingress').map((t) => t.name),
    egress: tc.filter((t) => t.kind === 'tcx/egress').map((t) => t.name),
  };
}

/** `ip rule` / routes of table / a sysctl of the pod netns, as text, for "left as found" checks. */
export function netnsSnapshot(netnsPath: string): string {
  const run = (argv: string[]): string => execFileSync('nsenter', [`--net=${netnsPath}`, ...argv], { encoding: 'utf8' });
  return [
    run(['ip', '-4', 'rule', 'show']),
    run(['ip', '-6', 'rule', 'show']),
    run(['ip', '-4', 'route', 'show', 'table', 'all']),
    run(['ip', '-6', 'route', 'show', 'table', 'all']).split('\n').filter((l) => !/^(local|multicast|anycast) .* table local/.test(l) || !/fe80/.test(l)).join('\n'),
    run(['sysctl', 'net.ipv4.conf.eth0.accept_local', 'net.ipv4.conf.all.accept_local', 'net.ipv4.conf.eth0.rp_filter']),
    run(['tc', 'qdisc', 'show', 'dev', 'eth0']),
  ].join('\n---\n');
}
