// The rules for one ambient pod: istio-cni's in-pod rule set (istio/istio cni/pkg/iptables/
// iptables.go, AppendInpodRules; pinned by cni/pkg/iptables/testdata/*.golden), as a pure function
// of the interpreted pod. They send the pod's traffic to the node's ztunnel, whose sockets live in
// the pod netns (15001 outbound, 15006 plaintext inbound, 15008 HBONE, 15053 DNS, all SO_MARK 0x539):
//  - nat PREROUTING: inbound TCP, except to 15008 and except packets carrying ztunnel's mark,
//    REDIRECT to 15006; the kubelet probe source (SNATed to 169.254.7.127 by istio-cni's host
//    rule) is let through first;
//  - nat OUTPUT: app TCP (no ztunnel mark) REDIRECT to 15001; app → own pod IP over lo, replies to
//    the probe source and connections carrying the connmark are let through; DNS (when the pod
//    has a DNS port) REDIRECT to it, with conntrack zones in raw keeping ztunnel's upstream DNS
//    flows apart from the app's;
//  - mangle: packets of ztunnel's spoofed-source connections (mark 0x539 arriving over lo) give
//    their connection the connmark 0x111; the app's replies get it back as their mark, and
//    `ip rule fwmark 0x111/0xfff pref 32764 lookup 100` + `local default dev lo table 100` deliver
//    them to ztunnel's transparent socket instead of routing them out of the pod.
// Rule for rule and in istio-cni's order, with ISTIO_PRERT/ISTIO_OUTPUT renamed SHUNT_PRERT/
// SHUNT_OUTPUT. Inbound and outbound capture are REDIRECT, as istio-cni does since 1.24 (in-pod
// TPROXY was removed in 1.25); the mark + policy route is what is left of TPROXY there, for the
// reply path only. Deliberate differences:
//  - a chain with no rules is not created (istio-cni declares nat ISTIO_PRERT and jumps to it even
//    with inbound capture bypassed: an empty chain, so the same verdicts);
//  - settings istio-cni's in-pod rules cannot express (inbound port lists or exclusions other than
//    15008, outbound port/CIDR selections, TPROXY interception) are refused by name rather than
//    silently ignored; virtual-interface reroute (istio.io/reroute-virtual-interfaces) is not
//    interpreted by the core, so not rendered.
// Lines are spelled the way iptables-save prints them (checked by the apply tests for both variants).

import type { MeshPod } from '@shunt/core';
import type { Family } from './addr';
import { checkPort, PodRulesError } from './errors';
import { emptyRouting, type FamilyRules, type PolicyRule, type RulePlan, type TableRules } from './plan';
import { hex, TableBuilder } from './table-builder';

/** istio-cni's in-pod constants (cni/pkg/config/config.go) and probe SNAT addresses (its defaults). */
export const AMBIENT = {
  /** SO_MARK on every ztunnel socket in the pod (ztunnel's inpod mark, 1337). */
  ztunnelMark: 0x539,
  markMask: 0xfff,
  /** Connmark of ztunnel's spoofed-source connections; the policy rule matches it on the replies. */
  connMark: 0x111,
  connMask: 0xfff,
  restoreMask: 0xffffffff,
  routeTable: 100,
  rulePriority: 32764,
  /** Source the host rule SNATs kubelet probes to (HOST_PROBE_SNAT_ADDRESS / _V6_). */
  probeSource: { v4: '169.254.7.127', v6: 'fd16:9254:7127:1337:ffff:ffff:ffff:ffff' },
} as const;

export const AMBIENT_CHAINS = {
  PRERT: 'SHUNT_PRERT',
  OUTPUT: 'SHUNT_OUTPUT',
} as const;

const DEFAULT_TUNNEL_PORT = 15008;

interface AmbientChecked {
  outboundPort: number;
  inboundPlaintextPort: number;
  tunnelPort: number;
  dnsPort: number | undefined;
  /** istio-cni's "ingress mode" (ambient.istio.io/bypass-inbound-capture): no inbound capture, no probe exemption. */
  bypassInbound: boolean;
}

function checkAmbient(pod: MeshPod): AmbientChecked {
  if (pod.interceptionMode !== 'REDIRECT') {
    throw new PodRulesError(pod, 'interceptionMode', pod.interceptionMode, "ambient pods are captured with REDIRECT, as istio-cni's in-pod rules do (in-pod TPROXY was removed in Istio 1.25)");
  }
  const { proxy, traffic } = pod;
  const outboundPort = checkPort(pod, 'proxy.outboundPort', proxy.outboundPort);
  const inboundPlaintextPort = checkPort(pod, 'proxy.inboundPort', proxy.inboundPort);
  const tunnelPort = proxy.tunnelPort === undefined ? DEFAULT_TUNNEL_PORT : checkPort(pod, 'proxy.tunnelPort', proxy.tunnelPort);
  const dnsPort = proxy.dnsPort === undefined ? undefined : checkPort(pod, 'proxy.dnsPort', proxy.dnsPort);

  const include = traffic.inbound.include;
  if (include !== '*' && !(Array.isArray(include) && include.length === 0)) {
    throw new PodRulesError(pod, 'traffic.inbound.include', include, "ambient inbound capture is all ('*') or nothing ([]): istio-cni's in-pod rules have no per-port inbound selection");
  }
  const exclude = traffic.inbound.exclude;
  if (!Array.isArray(exclude) || exclude.some((p) => p !== tunnelPort)) {
    throw new PodRulesError(pod, 'traffic.inbound.exclude', exclude, `ambient pods exclude only the HBONE port ${tunnelPort} from inbound capture (istio-cni's in-pod rules have no other exclusions)`);
  }
  const out = traffic.outbound;
  const selections: [string, unknown, boolean][] = [
    ['traffic.outbound.includeCidrs', out.includeCidrs, out.includeCidrs === '*'],
    ['traffic.outbound.excludeCidrs', out.excludeCidrs, Array.isArray(out.excludeCidrs) && out.excludeCidrs.length === 0],
    ['traffic.outbound.includePorts', out.includePorts, Array.isArray(out.includePorts) && out.includePorts.length === 0],
    ['traffic.outbound.excludePorts', out.excludePorts, Array.isArray(out.excludePorts) && out.excludePorts.length === 0],
  ];
  for (const [field, value, ok] of selections) {
    if (!ok) throw new PodRulesError(pod, field, value, "ambient pods send all outbound TCP to ztunnel: istio-cni's in-pod rules have no outbound port or CIDR selection");
  }
  return { outboundPort, inboundPlaintextPort, tunnelPort, dnsPort, bypassInbound: include !== '*' };
}

interface FamilyText {
  family: Family;
  /** `! -d` of the local-host exemptions, as iptables-save prints it. */
  loopback: string;
  probe: string;
}

const V4: FamilyText = { family: 4, loopback: '127.0.0.1/32', probe: `${AMBIENT.probeSource.v4}/32` };
const V6: FamilyText = { family: 6, loopback: '::1/128', probe: `${AMBIENT.probeSource.v6}/128` };

interface AmbientTables {
  mangle: TableBuilder;
  nat: TableBuilder;
  raw: TableBuilder;
}

/** AppendInpodRules, in its order (the order within each chain is what matters; tables are built side by side). */
function inpodRules(c: AmbientChecked, f: FamilyText): AmbientTables {
  const t: AmbientTables = { mangle: new TableBuilder(), nat: new TableBuilder(), raw: new TableBuilder() };
  const { PRERT, OUTPUT } = AMBIENT_CHAINS;
  const ztunnel = `${hex(AMBIENT.ztunnelMark)}/${hex(AMBIENT.markMask)}`;
  const conn = `${hex(AMBIENT.connMark)}/${hex(AMBIENT.connMask)}`;
  const restore = hex(AMBIENT.restoreMask);

  t.mangle.jump('PREROUTING', `-j ${PRERT}`);
  t.mangle.jump('OUTPUT', `-j ${OUTPUT}`);
  t.nat.jump('OUTPUT', `-j ${OUTPUT}`);
  if (c.dnsPort !== undefined) {
    t.raw.jump('PREROUTING', `-j ${PRERT}`);
    t.raw.jump('OUTPUT', `-j ${OUTPUT}`);
  }
  if (!c.bypassInbound) t.nat.jump('PREROUTING', `-j ${PRERT}`);

  // Packets of ztunnel's own connections into the app (spoofed client source, over lo) mark the connection.
  t.mangle.add(PRERT, `-m mark --mark ${ztunnel} -j CONNMARK --set-xmark ${conn}`);
  // Kubelet probes (SNATed to the probe address on the host) go straight to the app, and so do their replies.
  if (!c.bypassInbound) t.nat.add(PRERT, `-s ${f.probe} -p tcp -m tcp -j ACCEPT`);
  t.nat.add(OUTPUT, `-d ${f.probe} -p tcp -m tcp -j ACCEPT`);
  // Inbound: anything not for localhost and not ztunnel's own → plaintext inbound; HBONE goes to 15008 as is.
  if (!c.bypassInbound) {
    t.nat.add(PRERT, `! -d ${f.loopback} -p tcp -m tcp ! --dport ${c.tunnelPort} -m mark ! --mark ${ztunnel} -j REDIRECT --to-ports ${c.inboundPlaintextPort}`);
  }
  // Replies of ztunnel's spoofed-source connections carry the connmark again, so the policy route takes them back to ztunnel.
  t.mangle.add(OUTPUT, `-m connmark --mark ${conn} -j CONNMARK --restore-mark --nfmask ${restore} --ctmask ${restore}`);
  if (c.dnsPort !== undefined) {
    t.nat.add(OUTPUT, `! -o lo -p udp -m mark ! --mark ${ztunnel} -m udp --dport 53 -j REDIRECT --to-ports ${c.dnsPort}`);
    t.nat.add(OUTPUT, `! -d ${f.loopback} -p tcp -m tcp --dport 53 -m mark ! --mark ${ztunnel} -j REDIRECT --to-ports ${c.dnsPort}`);
    // ztunnel → upstream resolver and the resolver's answers to the app each in their own zone (istio#33469).
    t.raw.add(OUTPUT, `-p udp -m mark --mark ${ztunnel} -m udp --dport 53 -j CT --zone 1`);
    t.raw.add(PRERT, `-p udp -m mark ! --mark ${ztunnel} -m udp --sport 53 -j CT --zone 1`);
  }
  t.nat.add(OUTPUT, `-p tcp -m mark --mark ${conn} -j ACCEPT`);
  // App → its own pod IP (over lo) stays local, as does ztunnel's connection into the app.
  t.nat.add(OUTPUT, `! -d ${f.loopback} -o lo -j ACCEPT`);
  t.nat.add(OUTPUT, `! -d ${f.loopback} -p tcp -m mark ! --mark ${ztunnel} -j REDIRECT --to-ports ${c.outboundPort}`);
  return t;
}

/** The in-pod policy rule for one family (`ip rule add fwmark 0x111/0xfff pref 32764 lookup 100`). */
export function inpodPolicyRule(family: Family): PolicyRule {
  return { family, fwmark: AMBIENT.connMark, fwmask: AMBIENT.connMask, priority: AMBIENT.rulePriority, table: AMBIENT.routeTable };
}

/** Whether a policy rule is ambient's in-pod one (and not the sidecar TPROXY rule). */
export function isInpodRule(r: PolicyRule): boolean {
  return r.fwmark === AMBIENT.connMark && r.fwmask === AMBIENT.connMask && r.table === AMBIENT.routeTable;
}

/**
 * istio-cni's in-pod rules for an ambient member: per family (v4 always, v6 when the pod has an
 * IPv6 address, as istio-cni with IPv6 enabled), plus the connmark policy routing. Pure.
 * Throws PodRulesError naming the field for settings the in-pod rules cannot express.
 */
export function renderAmbientRules(pod: MeshPod): RulePlan {
  const plan: RulePlan = { v4: {}, v6: {}, routing: emptyRouting() };
  const c = checkAmbient(pod);
  const families: Family[] = pod.ips.v6.length > 0 ? [4, 6] : [4];
  for (const fam of families) {
    const t = inpodRules(c, fam === 4 ? V4 : V6);
    const rules: FamilyRules = {};
    for (const table of ['raw', 'mangle', 'nat'] as const) {
      const built: TableRules | undefined = t[table].build();
      if (built) rules[table] = built;
    }
    if (fam === 4) plan.v4 = rules;
    else plan.v6 = rules;
    plan.routing.policyRules.push(inpodPolicyRule(fam));
    plan.routing.localRoutes.push({ family: fam, table: AMBIENT.routeTable });
  }
  return plan;
}
