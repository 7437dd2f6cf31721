// MeshPods as the core's istio-ambient profile interprets them (ztunnel ports 15001/15006/15008,
// only 15008 never captured, DNS on with ambient.istio.io/dns-capture=true, inbound bypass with
// ambient.istio.io/bypass-inbound-capture=true), and the golden cases of the ambient rule set.
// Each case names the istio-cni golden (istio/istio cni/pkg/iptables/testdata/) it matches;
// render-ambient.test.ts checks the match line by line against ./istio-cni-goldens.ts.

import type { MeshPod } from '@shunt/core';
import type { GoldenCase } from './pods';

export function ambientPod(over: Partial<MeshPod> = {}): MeshPod {
  return {
    uid: 'uid-ambient',
    namespace: 'default',
    name: 'ambient',
    profile: 'istio-ambient',
    membership: 'ambient',
    hostNetwork: false,
    ips: { v4: ['198.18.0.10'], v6: [] },
    interceptionMode: 'REDIRECT',
    proxy: { uid: 1337, gid: 1337, outboundPort: 15001, inboundPort: 15006, tunnelPort: 15008 },
    traffic: {
      inbound: { include: '*', exclude: [15008] },
      outbound: { includePorts: [], excludePorts: [], includeCidrs: '*', excludeCidrs: [] },
    },
    ...over,
  };
}

export function withDns(pod: MeshPod, port = 15053): MeshPod {
  return { ...pod, proxy: { ...pod.proxy, dnsPort: port } };
}

export function bypassInbound(pod: MeshPod): MeshPod {
  return { ...pod, traffic: { ...pod.traffic, inbound: { ...pod.traffic.inbound, include: [] } } };
}

const DUAL = { v4: ['198.18.0.10'], v6: ['2001:db8:1::a'] };

export interface AmbientGoldenCase extends GoldenCase {
  /** The istio-cni golden(s) this case reproduces (v4 part, and v6 part when dual stack). */
  istio: string;
}

export const AMBIENT_GOLDEN_CASES: AmbientGoldenCase[] = [
  {
    name: 'ambient-default',
    istio: 'dns_pod_disabled_and_on_globally.golden',
    why: 'istio-cni in-pod rules without DNS: probe source 169.254.7.127 exempt, inbound TCP != 15008 unmarked -> 15006, app TCP -> 15001, connmark 0x111 + fwmark 0x111/0xfff pref 32764 lookup 100',
    pod: ambientPod(),
  },
  {
    name: 'ambient-dns',
    istio: 'default.golden (= dns_pod_enabled_and_off_globally.golden)',
    why: 'istio-cni in-pod rules with DNS capture: UDP/TCP 53 -> 15053, raw CT zone 1 for ztunnel upstream and answers',
    pod: withDns(ambientPod()),
  },
  {
    name: 'ambient-dual-stack',
    istio: 'dns_pod_disabled_and_on_globally_ipv6.golden',
    why: 'same in ip6tables with ::1/128 and probe source fd16:9254:7127:1337:ffff:ffff:ffff:ffff; v6 policy rule and local route',
    pod: ambientPod({ ips: DUAL }),
  },
  {
    name: 'ambient-dual-stack-dns',
    istio: 'default_ipv6.golden (= dns_pod_enabled_and_off_globally_ipv6.golden)',
    why: 'dual stack with DNS capture',
    pod: withDns(ambientPod({ ips: DUAL })),
  },
  {
    name: 'ambient-bypass-inbound',
    istio: 'ingress.golden',
    why: 'ambient.istio.io/bypass-inbound-capture=true (istio-cni ingress mode): no inbound redirect, no probe-source PREROUTING rule',
    pod: bypassInbound(ambientPod()),
  },
  { name: 'ambient-host-network', istio: '(none: istio-cni never enrolls host-network pods)', why: 'host-network ambient pods get nothing', pod: ambientPod({ hostNetwork: true }) },
];
