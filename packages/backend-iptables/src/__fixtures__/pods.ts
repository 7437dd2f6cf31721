// MeshPods as the core's istio-sidecar profile interprets them (uid/gid 1337, 15001/15006, never
// capture 15008/15020/15021/15090), with the knobs the golden and apply tests turn.

import type { Cidr, MeshPod } from '@shunt/core';
import type { RenderOptions } from '../options';
import { AMBIENT_GOLDEN_CASES } from './ambient-pods';

export function cidr(text: string): Cidr {
  const [address, prefix] = text.split('/') as [string, string];
  return { family: address.includes(':') ? 6 : 4, address, prefix: Number(prefix) };
}

export const NEVER_CAPTURE = [15008, 15020, 15021, 15090];

export function sidecarPod(over: Partial<MeshPod> = {}): MeshPod {
  return {
    uid: 'uid-golden',
    namespace: 'default',
    name: 'golden',
    profile: 'istio-sidecar',
    membership: 'sidecar',
    hostNetwork: false,
    ips: { v4: ['198.18.0.10'], v6: [] },
    interceptionMode: 'REDIRECT',
    proxy: { uid: 1337, gid: 1337, outboundPort: 15001, inboundPort: 15006 },
    traffic: {
      inbound: { include: '*', exclude: [...NEVER_CAPTURE] },
      outbound: { includePorts: [], excludePorts: [], includeCidrs: '*', excludeCidrs: [] },
    },
    ...over,
  };
}

type Traffic = MeshPod['traffic'];
export function withTraffic(pod: MeshPod, t: { inbound?: Partial<Traffic['inbound']>; outbound?: Partial<Traffic['outbound']> }): MeshPod {
  return {
    ...pod,
    traffic: {
      inbound: { ...pod.traffic.inbound, ...t.inbound },
      outbound: { ...pod.traffic.outbound, ...t.outbound },
    },
  };
}

const DUAL = { v4: ['198.18.0.10'], v6: ['2001:db8:1::a'] };
const PROXY = { uid: 1337, gid: 1337, outboundPort: 15001, inboundPort: 15006 };

/** Istio's run_test.go constructTestConfig: -b "" -i "" (no capture) unless the case sets more. */
function istioTest(over: Partial<MeshPod> = {}, t: Parameters<typeof withTraffic>[1] = {}): MeshPod {
  const base = withTraffic(sidecarPod(over), { inbound: { include: [], exclude: [] }, outbound: { includeCidrs: [] } });
  return withTraffic(base, t);
}

export interface GoldenCase {
  name: string;
  /** What the case pins, in Istio's words where there is one. */
  why: string;
  pod: MeshPod;
  opts?: Partial<RenderOptions>;
}

export const GOLDEN_CASES: GoldenCase[] = [
  { name: 'defaults', why: 'istio inbound-ports-wildcard: -b * -d 15090,15021,15020 -i *', pod: sidecarPod() },
  { name: 'dual-stack', why: 'istio ipv6-*: same rules in ip6tables with ::1/128, ::6/128; ::6 added to lo', pod: sidecarPod({ ips: DUAL }) },
  {
    name: 'exclude-inbound-ports',
    why: 'excludeInboundPorts=22,8443 added to the never-captured ports',
    pod: withTraffic(sidecarPod(), { inbound: { exclude: [...NEVER_CAPTURE, 22, 8443] } }),
  },
  {
    name: 'include-inbound-ports',
    why: 'istio inbound-ports-include: one REDIRECT per listed port; excluded ports dropped from the list',
    pod: withTraffic(sidecarPod(), { inbound: { include: [8080, 9090, 15020] } }),
  },
  {
    name: 'include-inbound-ports-empty',
    why: 'includeInboundPorts="" : no inbound capture, no PREROUTING jump',
    pod: withTraffic(sidecarPod(), { inbound: { include: [] } }),
  },
  {
    name: 'exclude-outbound-ports',
    why: 'istio outbound-ports-exclude: tcp and udp RETURN per port, first in SHUNT_OUTPUT',
    pod: withTraffic(sidecarPod(), { outbound: { excludePorts: [22, 3306] } }),
  },
  {
    name: 'include-outbound-ports',
    why: 'istio outbound-ports-include: -q 32000,31000 with -i "" (ports captured whatever the address)',
    pod: withTraffic(sidecarPod(), { outbound: { includePorts: [32000, 31000], includeCidrs: [] } }),
  },
  {
    name: 'include-outbound-cidrs',
    why: 'istio ip-range: -i list gives one -d <cidr> -j SHUNT_REDIRECT per CIDR of the family',
    pod: withTraffic(sidecarPod({ ips: DUAL }), { outbound: { includeCidrs: [cidr('10.96.0.0/12'), cidr('198.18.0.0/15'), cidr('2001:db8:ff::/48')] } }),
  },
  {
    name: 'include-outbound-cidrs-empty',
    why: 'includeOutboundIPRanges="" : no outbound capture, proxy-to-self over lo still goes inbound',
    pod: withTraffic(sidecarPod(), { outbound: { includeCidrs: [] } }),
  },
  {
    name: 'exclude-outbound-cidrs',
    why: 'excludeOutboundIPRanges: RETURNs after the localhost RETURN, per family, before the wildcard include',
    pod: withTraffic(sidecarPod({ ips: DUAL }), { outbound: { excludeCidrs: [cidr('198.19.0.0/16'), cidr('2001:db8:dead::/48')] } }),
  },
  {
    name: 'exclude-wins-over-include',
    why: 'exclude CIDRs and the include port precede the include CIDRs, so an excluded network stays excluded',
    pod: withTraffic(sidecarPod(), {
      outbound: { includeCidrs: [cidr('198.18.0.0/15')], excludeCidrs: [cidr('198.18.5.0/24')], includePorts: [9000], excludePorts: [9000] },
    }),
  },
  {
    name: 'include-loopback-cidr',
    why: 'istio loopback-outbound-iprange: a loopback include drops the "-o lo ! --uid-owner RETURN" rules',
    pod: withTraffic(sidecarPod(), { outbound: { includeCidrs: [cidr('127.1.2.3/32'), cidr('10.0.0.0/8')] } }),
  },
  {
    name: 'non-canonical-cidrs',
    why: 'host bits cleared and IPv6 spelled as iptables-save prints it',
    pod: withTraffic(sidecarPod({ ips: DUAL }), { outbound: { includeCidrs: [cidr('198.18.7.9/16'), cidr('2001:DB8:0:0:0:0:0:1/64'), cidr('::ffff:198.18.0.1/128')] } }),
  },
  { name: 'tproxy', why: 'istio inbound-ports-wildcard-tproxy: mangle DIVERT/TPROXY, marks, policy routing', pod: sidecarPod({ interceptionMode: 'TPROXY' }) },
  {
    name: 'tproxy-include-inbound-ports',
    why: 'istio inbound-ports-tproxy: per port DIVERT for established flows and TPROXY for new ones',
    pod: withTraffic(sidecarPod({ interceptionMode: 'TPROXY' }), { inbound: { include: [8080, 9090] } }),
  },
  {
    name: 'tproxy-include-inbound-ports-empty',
    why: 'TPROXY without inbound capture keeps the mark plumbing, no SHUNT_INBOUND',
    pod: withTraffic(sidecarPod({ interceptionMode: 'TPROXY' }), { inbound: { include: [] } }),
  },
  { name: 'tproxy-dual-stack', why: 'istio tproxy (ipv6 part): ip6tables mangle with --on-ip ::, v6 policy routing', pod: sidecarPod({ interceptionMode: 'TPROXY', ips: DUAL }) },
  {
    name: 'dns-capture-all',
    why: 'ISTIO_META_DNS_CAPTURE with capture-all (the CNI default): TCP/UDP 53 -> 15053, raw CT zones',
    pod: sidecarPod({ proxy: { uid: 1337, gid: 1337, outboundPort: 15001, inboundPort: 15006, dnsPort: 15053 } }),
  },
  {
    name: 'dns-servers-dual-stack',
    why: 'istio dns-uid-gid: DNS capture limited to resolv.conf servers, per family',
    pod: sidecarPod({ ips: DUAL, proxy: { uid: 1337, gid: 1337, outboundPort: 15001, inboundPort: 15006, dnsPort: 15053 } }),
    opts: { dnsServers: { v4: ['198.18.0.53'], v6: ['2001:db8::53'] } },
  },
  {
    name: 'tproxy-dns-exclude-ports',
    why: 'TPROXY and DNS together with port excludes both ways',
    pod: withTraffic(sidecarPod({ interceptionMode: 'TPROXY', proxy: { uid: 1337, gid: 1337, outboundPort: 15001, inboundPort: 15006, dnsPort: 15053 } }), {
      inbound: { exclude: [...NEVER_CAPTURE, 22] },
      outbound: { excludePorts: [5432] },
    }),
  },
  {
    name: 'custom-proxy',
    why: 'proxy uid 2000 gid 3000, ports 16001/16006, tunnel 16008; custom mark/table',
    pod: withTraffic(
      sidecarPod({ interceptionMode: 'TPROXY', proxy: { uid: 2000, gid: 3000, outboundPort: 16001, inboundPort: 16006, tunnelPort: 16008 } }),
      { inbound: { exclude: [16008] } },
    ),
    opts: { tproxyMark: 0x100, outboundMark: 0x200, tproxyTable: 200 },
  },
  // The options beyond ports and CIDRs. Each case sets what the Istio test case sets on top of
  // run_test.go's constructTestConfig (no inbound and no outbound capture unless set), so the golden
  // compares rule by rule with tools/istio-iptables/pkg/capture/testdata/<istio golden> (istio/istio
  // 86c9f01fd73); `why` names it, ISTIO_* is SHUNT_*, and lists how ours differs.
  {
    name: 'exclude-interfaces',
    why: 'istio basic-exclude-nic (-c not-istio-nic): nat OUTPUT RETURN at the head of SHUNT_OUTPUT; PREROUTING RETURN in SHUNT_PREROUTING (no inbound capture, so nothing follows it)',
    pod: istioTest({ capture: { excludeInterfaces: ['not-istio-nic'] } }),
  },
  {
    name: 'exclude-interfaces-tproxy-dns-dual-stack',
    why: 'istio tproxy (TPROXY, -b *, -x 1.1.0.0/16, -i 9.9.0.0/16, DNS to 127.0.0.53, -c not-istio-nic, IPv6): mangle RETURNs at the head of SHUNT_PREROUTING/SHUNT_OUTPUT; differs only in the 15008 RETURN in mangle SHUNT_INBOUND (README: TPROXY and 15008)',
    pod: istioTest(
      { interceptionMode: 'TPROXY', ips: DUAL, proxy: { ...PROXY, dnsPort: 15053 }, capture: { excludeInterfaces: ['not-istio-nic'], dnsServers: { v4: ['127.0.0.53'], v6: [] } } },
      { inbound: { include: '*' }, outbound: { includeCidrs: [cidr('9.9.0.0/16')], excludeCidrs: [cidr('1.1.0.0/16')] } },
    ),
  },
  {
    name: 'reroute-interfaces',
    why: 'istio kube-virt-interfaces (-k eth1,eth2, -i *): SHUNT_PREROUTING holds the reroute REDIRECTs then the RETURNs, last-inserted first as Istio -I 1 leaves them',
    pod: istioTest({ capture: { rerouteInterfaces: ['eth1', 'eth2'] } }, { outbound: { includeCidrs: '*' } }),
  },
  {
    name: 'reroute-interfaces-cidrs',
    why: 'istio ipnets-with-kube-virt-interfaces (-k eth1,eth2, -i 10.0.0.0/8): per-CIDR reroute REDIRECTs (-d … -i …)',
    pod: istioTest({ capture: { rerouteInterfaces: ['eth1', 'eth2'] } }, { outbound: { includeCidrs: [cidr('10.0.0.0/8')] } }),
  },
  {
    name: 'reroute-interfaces-dual-stack',
    why: 'istio ipv6-virt-interfaces (-b 4000,5000, -k eth0,eth1, IPv6): RETURNs, then the inbound jump, in SHUNT_PREROUTING of both families',
    pod: istioTest({ ips: DUAL, capture: { rerouteInterfaces: ['eth0', 'eth1'] } }, { inbound: { include: [4000, 5000] } }),
  },
  {
    name: 'proxy-uids-gids-dns-dual-stack',
    why: 'istio dns-uid-gid (-u 3,4 -g 1,2, DNS to 127.0.0.53 and ::127.0.0.53, IPv6): the uid block per uid, the gid block per gid, CT zones per id',
    pod: istioTest({ ips: DUAL, proxy: { ...PROXY, uid: 3, gid: 1, extraUids: [4], extraGids: [2], dnsPort: 15053 }, capture: { dnsServers: { v4: ['127.0.0.53'], v6: ['::127.0.0.53'] } } }),
  },
  {
    name: 'loopback-include-proxy-uids-dns',
    why: 'istio loopback-outbound-iprange (-i 127.1.2.3/32, -u 3,4 -g 1,2, DNS to 127.0.0.53): a loopback include drops the -o lo RETURNs of every id',
    pod: istioTest({ proxy: { ...PROXY, uid: 3, gid: 1, extraUids: [4], extraGids: [2], dnsPort: 15053 }, capture: { dnsServers: { v4: ['127.0.0.53'], v6: [] } } }, { outbound: { includeCidrs: [cidr('127.1.2.3/32')] } }),
  },
  {
    name: 'owner-groups-include',
    why: 'istio outbound-owner-groups (ISTIO_OUTBOUND_OWNER_GROUPS=java,202): one RETURN for every group not listed; numeric 1001 stands in for the name java (names are refused)',
    pod: istioTest({ capture: { ownerGroups: { include: [1001, 202], exclude: [] } } }),
  },
  {
    name: 'owner-groups-exclude',
    why: 'istio outbound-owner-groups-exclude (ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE=888,ftp): one RETURN per excluded group; 21 stands in for ftp',
    pod: istioTest({ capture: { ownerGroups: { include: '*', exclude: [888, 21] } } }),
  },
  {
    name: 'drop-invalid',
    why: 'istio drop-invalid (INVALID_DROP=true): mangle PREROUTING ctstate INVALID -> SHUNT_DROP -> DROP',
    pod: istioTest({ capture: { dropInvalid: true } }),
  },
  {
    name: 'drop-invalid-tproxy-exclude-interfaces',
    why: 'no Istio golden (INVALID_DROP + TPROXY + -c): Istio appends PREROUTING -i nic RETURN before the INVALID rule, so SHUNT_DROP returns excluded NICs first; the DROP jump precedes the TPROXY jump',
    pod: sidecarPod({ interceptionMode: 'TPROXY', capture: { dropInvalid: true, excludeInterfaces: ['net1'] } }),
  },
  {
    name: 'host-loopback-cidr',
    why: 'istio host-ipv4-loopback-cidr (ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR=127.0.0.1/8): every v4 localhost match uses the range; iptables-save spells 127.0.0.1/8 as 127.0.0.0/8',
    pod: istioTest({ capture: { hostLoopbackCidr: { family: 4, address: '127.0.0.0', prefix: 8 } } }),
  },
  { name: 'not-a-member', why: 'a pod without a sidecar gets nothing', pod: sidecarPod({ membership: 'none' }) },
  { name: 'interception-none', why: 'sidecar.istio.io/interceptionMode=NONE gets nothing', pod: sidecarPod({ interceptionMode: 'NONE' }) },
  { name: 'host-network', why: 'host-network pods are never captured', pod: sidecarPod({ hostNetwork: true }) },
  // istio-cni's in-pod rule set for ambient members (see ambient-pods.ts).
  ...AMBIENT_GOLDEN_CASES,
];
