// The ambient rule set against istio-cni's own golden files, chain by chain. Which of our golden
// cases (src/__golden__/ambient-*.golden, written by render.test.ts) matches which Istio golden
// (istio/istio cni/pkg/iptables/testdata/, lines in __fixtures__/istio-cni-goldens.ts):
//   ambient-default        ↔ dns_pod_disabled_and_on_globally.golden (no DNS capture; the core's default)
//   ambient-dns            ↔ default.golden and dns_pod_enabled_and_off_globally.golden (DNS capture on)
//   ambient-dual-stack     ↔ dns_pod_disabled_and_on_globally_ipv6.golden
//   ambient-dual-stack-dns ↔ default_ipv6.golden and dns_pod_enabled_and_off_globally_ipv6.golden
//   ambient-bypass-inbound ↔ ingress.golden
// Probe exemption (169.254.7.127 / fd16:9254:7127:1337:ffff:ffff:ffff:ffff) is part of each of
// them; istio-cni's hostprobe*.golden are its host-netns SNAT rules, which are not pod rules, and
// virtual_interfaces*.golden need istio.io/reroute-virtual-interfaces, which the core does not read.

import type { MeshPod } from '@shunt/core';
import { AMBIENT_GOLDEN_CASES, ambientPod, bypassInbound, withDns } from './__fixtures__/ambient-pods';
import { ISTIO_CNI_GOLDENS, type IstioTables } from './__fixtures__/istio-cni-goldens';
import { PodRulesError } from './errors';
import { planFingerprint } from './fingerprint';
import { renderOptionsFrom } from './options';
import { canonicalTable, chainOf, type FamilyRules, TABLES } from './plan';
import { AMBIENT, renderAmbientRules } from './render-ambient';
import { renderRules } from './render';

const opts = renderOptionsFrom();

/** An istio-cni golden line spelled as iptables-save prints it, with our chain names and istio-cni's default v6 probe address. */
function saveForm(line: string): string {
  return line
    .replace(/ISTIO_/g, 'SHUNT_')
    .replace('e9ac:1e77:90ca:399f:4d6d:ece2:2f9b:3164', AMBIENT.probeSource.v6)
    .replace(/(-[sd] 169\.254\.7\.127) /, '$1/32 ')
    .replace(/(-[sd] fd16:9254:7127:1337:ffff:ffff:ffff:ffff) /, '$1/128 ')
    .replace('-p tcp ! --dport', '-p tcp -m tcp ! --dport')
    .replace('-p tcp --dport 53', '-p tcp -m tcp --dport 53')
    .replace('--to-port 15053', '--to-ports 15053');
}

/** Per table: jumps from built-in chains, and each of our chains' rules in order. */
function byChain(lines: string[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const l of lines) (out[chainOf(l)] ??= []).push(l);
  return out;
}

function ours(f: FamilyRules): Record<string, Record<string, string[]>> {
  const out: Record<string, Record<string, string[]>> = {};
  for (const t of TABLES) {
    const tr = f[t];
    if (tr) out[t] = byChain([...tr.jumps, ...tr.rules]);
  }
  return out;
}

function istio(t: IstioTables): Record<string, Record<string, string[]>> {
  const out: Record<string, Record<string, string[]>> = {};
  for (const [table, lines] of Object.entries(t)) {
    const saved = lines.map(saveForm);
    const filled = new Set(saved.map(chainOf).filter((c) => c.startsWith('SHUNT_')));
    // Deliberate difference: istio-cni jumps to nat ISTIO_PRERT even when it holds nothing (ingress mode); we create no empty chain.
    out[table] = byChain(saved.filter((l) => filled.has(chainOf(l)) || !/-j (SHUNT_\S+)$/.test(l) || filled.has(/-j (SHUNT_\S+)$/.exec(l)![1]!)));
  }
  return out;
}

describe('ambient rules match istio-cni goldens line by line', () => {
  test.each(AMBIENT_GOLDEN_CASES.filter((c) => !c.istio.startsWith('(')).map((c) => [c.name, c.istio, c] as const))('%s ↔ %s', (_n, _i, c) => {
    const plan = renderRules(c.pod, opts);
    const names = c.istio.split(/ \(= | and /).map((s) => s.replace(/\)$/, ''));
    for (const name of names) {
      const ref = ISTIO_CNI_GOLDENS[name];
      expect(ref).toBeDefined();
      expect(ours(plan.v4)).toEqual(istio(ref!.v4));
      if (ref!.v6) expect(ours(plan.v6)).toEqual(istio(ref!.v6));
      else expect(plan.v6).toEqual({});
    }
    // The connmark's policy routing in every family the pod has (nldeps: AddInpodMarkIPRule, AddLoopbackRoutes).
    const fams = c.pod.ips.v6.length ? [4, 6] : [4];
    expect(plan.routing.policyRules).toEqual(fams.map((family) => ({ family, fwmark: 0x111, fwmask: 0xfff, priority: 32764, table: 100 })));
    expect(plan.routing.localRoutes).toEqual(fams.map((family) => ({ family, table: 100 })));
    expect(plan.routing.loopbackAddresses).toEqual([]);
  });

  test('the probe exemption comes before the inbound redirect, and the lo/connmark exemptions before the outbound one', () => {
    const nat = canonicalTable(renderAmbientRules(withDns(ambientPod({ ips: { v4: ['198.18.0.10'], v6: ['2001:db8:1::a'] } }))).v6.nat);
    const prert = nat.rules.filter((l) => l.startsWith('-A SHUNT_PRERT '));
    expect(prert[0]).toBe('-A SHUNT_PRERT -s fd16:9254:7127:1337:ffff:ffff:ffff:ffff/128 -p tcp -m tcp -j ACCEPT');
    expect(prert[1]).toMatch(/-j REDIRECT --to-ports 15006$/);
    const out = nat.rules.filter((l) => l.startsWith('-A SHUNT_OUTPUT '));
    expect(out[out.length - 1]).toMatch(/-j REDIRECT --to-ports 15001$/);
    expect(out.slice(0, -1).every((l) => !l.endsWith('--to-ports 15001'))).toBe(true);
  });
});

describe('renderAmbientRules', () => {
  test('pure, and the fingerprint follows the rules', () => {
    expect(renderAmbientRules(ambientPod())).toEqual(renderAmbientRules(ambientPod()));
    const fps = [ambientPod(), withDns(ambientPod()), bypassInbound(ambientPod()), ambientPod({ ips: { v4: ['198.18.0.10'], v6: ['2001:db8:1::a'] } })].map((p) => planFingerprint(renderRules(p, opts)));
    expect(new Set(fps).size).toBe(4);
  });

  test('custom ztunnel ports come from the pod', () => {
    const pod = withDns(ambientPod({ proxy: { uid: 1337, gid: 1337, outboundPort: 16001, inboundPort: 16006, tunnelPort: 16008 }, traffic: { ...ambientPod().traffic, inbound: { include: '*', exclude: [16008] } } }), 16053);
    const text = JSON.stringify(renderAmbientRules(pod));
    for (const p of ['--to-ports 16001', '--to-ports 16006', '! --dport 16008', '--to-ports 16053']) expect(text).toContain(p);
    expect(text).not.toMatch(/1500[168]|15053/);
  });

  test('non-members, host-network and NONE get nothing', () => {
    for (const pod of [ambientPod({ membership: 'none' }), ambientPod({ hostNetwork: true }), ambientPod({ interceptionMode: 'NONE' })]) {
      expect(renderRules(pod, opts)).toEqual({ v4: {}, v6: {}, routing: { policyRules: [], localRoutes: [], loopbackAddresses: [] } });
    }
  });

  const t = ambientPod().traffic;
  test.each([
    ['interceptionMode', ambientPod({ interceptionMode: 'TPROXY' }), 'TPROXY'],
    ['proxy.dnsPort', withDns(ambientPod(), 70000), '70000'],
    ['proxy.outboundPort', ambientPod({ proxy: { uid: 1337, gid: 1337, outboundPort: 0, inboundPort: 15006 } }), '0'],
    ['traffic.inbound.include', ambientPod({ traffic: { ...t, inbound: { include: [8080], exclude: [15008] } } }), '[8080]'],
    ['traffic.inbound.exclude', ambientPod({ traffic: { ...t, inbound: { include: '*', exclude: [15008, 15020] } } }), '[15008,15020]'],
    ['traffic.outbound.excludePorts', ambientPod({ traffic: { ...t, outbound: { ...t.outbound, excludePorts: [22] } } }), '[22]'],
    ['traffic.outbound.includeCidrs', ambientPod({ traffic: { ...t, outbound: { ...t.outbound, includeCidrs: [] } } }), '[]'],
  ] as [string, MeshPod, string][])('refuses %s it cannot express, naming pod, field and value', (field, pod, value) => {
    let err: unknown;
    try {
      renderRules(pod, opts);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PodRulesError);
    expect((err as Error).message).toContain(`pod default/ambient: ${field}=`);
    expect((err as Error).message).toContain(value);
  });
});
