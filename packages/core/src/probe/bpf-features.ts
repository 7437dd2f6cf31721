// What each BPF feature's probe asks the kernel, and since which upstream release each part exists.
// Pure data: the node probe runs the parts (probe/node.ts), FEATURE_SINCE takes the newest part
// (selection/rules.ts), the capability fixtures describe every part (selection/fixtures.ts). A feature
// the backends use from several program types probes each of them, because the kernel grants helpers
// per program type and did so in different releases.
import { kernel } from '../kernel';
import type { FeatureName, KernelVersion } from '../types';

export type BpfProbeCall =
  | { kind: 'prog'; progType: string }
  | { kind: 'helper'; progType: string; helper: string }
  | { kind: 'attach'; progType: string; attachType: string }
  /** sk_lookup program type + bpf_sk_assign from it + netns links for it (@shunt/libbpf probeSkLookup). */
  | { kind: 'sk_lookup' }
  | { kind: 'tcx' };

export interface BpfProbePart {
  call: BpfProbeCall;
  /** Upstream release in which this part appeared (sources: the kernel's git history, docs.ebpf.io). */
  since: KernelVersion;
}

export type BpfFeatureName = Extract<FeatureName, `prog:${string}` | `helper:${string}` | `attach:${string}` | `link:${string}`>;

const prog = (progType: string, since: string): BpfProbePart => ({ call: { kind: 'prog', progType }, since: kernel(since) });
const helper = (progType: string, name: string, since: string): BpfProbePart => ({ call: { kind: 'helper', progType, helper: name }, since: kernel(since) });
const attach = (progType: string, attachType: string, since: string): BpfProbePart => ({
  call: { kind: 'attach', progType, attachType },
  since: kernel(since),
});

export const BPF_FEATURE_PROBES: Record<BpfFeatureName, readonly BpfProbePart[]> = {
  'prog:sock_ops': [prog('sock_ops', '4.13')],
  'prog:sk_msg': [prog('sk_msg', '4.17')],
  // The probe loads it with expected_attach_type connect4 (connect4/6 arrived together).
  'prog:cgroup_sock_addr': [prog('cgroup_sock_addr', '4.17')],
  'prog:cgroup_sockopt': [prog('cgroup_sockopt', '5.3')],
  'prog:sched_cls': [prog('sched_cls', '4.1')],
  'prog:sk_lookup': [{ call: { kind: 'sk_lookup' }, since: kernel('5.9') }],
  'attach:cgroup_udp_sendmsg': [attach('cgroup_sock_addr', 'cgroup_udp4_sendmsg', '4.18'), attach('cgroup_sock_addr', 'cgroup_udp6_sendmsg', '4.18')],
  'attach:cgroup_udp_recvmsg': [attach('cgroup_sock_addr', 'cgroup_udp4_recvmsg', '5.2'), attach('cgroup_sock_addr', 'cgroup_udp6_recvmsg', '5.2')],
  'attach:cgroup_getpeername': [
    attach('cgroup_sock_addr', 'cgroup_inet4_getpeername', '5.8'),
    attach('cgroup_sock_addr', 'cgroup_inet6_getpeername', '5.8'),
  ],
  'attach:cgroup_sock_release': [attach('cgroup_sock', 'cgroup_inet_sock_release', '5.9')],
  'helper:msg_redirect_hash': [helper('sk_msg', 'msg_redirect_hash', '4.18')], // with BPF_MAP_TYPE_SOCKHASH
  'helper:sock_hash_update': [helper('sock_ops', 'sock_hash_update', '4.18')],
  // cgroup hooks: 5.7 (netns cookie for cgroup hooks); sock_ops and sk_msg: 5.15 (2021); cgroup_sockopt:
  // by 5.15. Every sockops program keys its state by netns cookie, so all four must pass.
  'helper:get_netns_cookie': [
    helper('cgroup_sock_addr', 'get_netns_cookie', '5.7'),
    helper('sock_ops', 'get_netns_cookie', '5.15'),
    helper('sk_msg', 'get_netns_cookie', '5.15'),
    helper('cgroup_sockopt', 'get_netns_cookie', '5.15'),
  ],
  // sock_addr and sock_ops: 4.19; cgroup_sock (sock_release): 5.7.
  'helper:get_socket_cookie': [
    helper('cgroup_sock_addr', 'get_socket_cookie', '4.19'),
    helper('sock_ops', 'get_socket_cookie', '4.19'),
    helper('cgroup_sock', 'get_socket_cookie', '5.7'),
  ],
  // The proxy's own connects are told apart by uid/gid (as istio-iptables' owner match does).
  'helper:get_current_uid_gid': [helper('cgroup_sock_addr', 'get_current_uid_gid', '4.17')],
  'helper:sk_assign': [helper('sched_cls', 'sk_assign', '5.7')],
  'helper:redirect_peer': [helper('sched_cls', 'redirect_peer', '5.10')],
  'link:tcx': [{ call: { kind: 'tcx' }, since: kernel('6.6') }],
};

/** Short text for one part, as evidence and in fixtures: "get_netns_cookie from sock_ops". */
export function describeProbeCall(c: BpfProbeCall): string {
  switch (c.kind) {
    case 'prog':
      return `${c.progType} programs`;
    case 'helper':
      return `${c.helper} from ${c.progType}`;
    case 'attach':
      return `${c.progType} attached as ${c.attachType}`;
    case 'sk_lookup':
      return 'sk_lookup programs with sk_assign and netns links';
    case 'tcx':
      return 'tcx links';
  }
}
