import { readFileSync, writeFileSync, mkdirSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describePlan } from './describe';
import { planFingerprint } from './fingerprint';
import { renderOptionsFrom } from './options';
import { renderRules } from './render';
import { GOLDEN_CASES, sidecarPod, withTraffic, cidr } from './__fixtures__/pods';
import { networkText } from './addr';
import { PodRulesError } from './errors';

const GOLDEN_DIR = join(__dirname, '__golden__');
const UPDATE = process.env.SHUNT_UPDATE_GOLDEN === '1';

describe('golden rule sets', () => {
  beforeAll(() => {
    if (UPDATE) mkdirSync(GOLDEN_DIR, { recursive: true });
  });

  test.each(GOLDEN_CASES.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const text = `# ${c.name}: ${c.why}\n${describePlan(renderRules(c.pod, renderOptionsFrom(c.opts)))}`;
    const file = join(GOLDEN_DIR, `${c.name}.golden`);
    if (UPDATE) writeFileSync(file, text);
    expect(existsSync(file)).toBe(true);
    expect(text).toEqual(readFileSync(file, 'utf8'));
  });

  test('no stale golden files', () => {
    const names = new Set(GOLDEN_CASES.map((c) => `${c.name}.golden`));
    expect(readdirSync(GOLDEN_DIR).filter((f) => !names.has(f))).toEqual([]);
  });
});

describe('renderRules', () => {
  const opts = renderOptionsFrom();

  test('is pure: same input, same plan and fingerprint', () => {
    const a = renderRules(sidecarPod(), opts);
    const b = renderRules(sidecarPod(), opts);
    expect(a).toEqual(b);
    expect(planFingerprint(a)).toBe(planFingerprint(b));
  });

  test('fingerprint changes with any rule', () => {
    const base = planFingerprint(renderRules(sidecarPod(), opts));
    const other = planFingerprint(renderRules(withTraffic(sidecarPod(), { outbound: { excludePorts: [22] } }), opts));
    const tproxy = planFingerprint(renderRules(sidecarPod({ interceptionMode: 'TPROXY' }), opts));
    expect(new Set([base, other, tproxy]).size).toBe(3);
  });

  test('excluded outbound ports and CIDRs come before every redirect', () => {
    const pod = withTraffic(sidecarPod(), { outbound: { includePorts: [9000], excludePorts: [9000], includeCidrs: [cidr('10.0.0.0/8')], excludeCidrs: [cidr('10.1.0.0/16')] } });
    const rules = renderRules(pod, opts).v4.nat!.rules.filter((l) => l.startsWith('-A SHUNT_OUTPUT '));
    const firstRedirect = rules.findIndex((l) => l.endsWith('-j SHUNT_REDIRECT'));
    expect(rules.findIndex((l) => l.includes('--dport 9000 -j RETURN'))).toBeLessThan(firstRedirect);
    expect(rules.findIndex((l) => l.includes('-d 10.1.0.0/16 -j RETURN'))).toBeLessThan(firstRedirect);
  });

  test.each([
    ['proxy.outboundPort', sidecarPod({ proxy: { uid: 1337, gid: 1337, outboundPort: 0, inboundPort: 15006 } }), 0],
    ['proxy.uid', sidecarPod({ proxy: { uid: -1, gid: 1337, outboundPort: 15001, inboundPort: 15006 } }), -1],
    ['traffic.inbound.exclude[0]', withTraffic(sidecarPod(), { inbound: { exclude: [70000] } }), 70000],
    ['traffic.outbound.excludeCidrs[0]', withTraffic(sidecarPod(), { outbound: { excludeCidrs: [{ family: 4, address: '300.1.1.1', prefix: 8 }] } }), undefined],
    ['traffic.outbound.includeCidrs[0]', withTraffic(sidecarPod(), { outbound: { includeCidrs: [{ family: 6, address: '10.0.0.0', prefix: 8 }] } }), undefined],
  ])('rejects bad %s naming the pod and field', (field, pod, value) => {
    let err: unknown;
    try {
      renderRules(pod, opts);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PodRulesError);
    expect((err as Error).message).toContain('pod default/golden');
    expect((err as Error).message).toContain(field);
    if (value !== undefined) expect((err as Error).message).toContain(String(value));
  });

  test.each([
    ['capture.excludeInterfaces[0]', sidecarPod({ capture: { excludeInterfaces: ['bad name'] } }), 'bad name'],
    ['capture.rerouteInterfaces[1]', sidecarPod({ capture: { rerouteInterfaces: ['eth1', 'x'.repeat(16)] } }), 'x'.repeat(16)],
    ['proxy.extraUids[0]', sidecarPod({ proxy: { uid: 1337, gid: 1337, outboundPort: 15001, inboundPort: 15006, extraUids: [-3] } }), -3],
    ['capture.ownerGroups.include[0]', sidecarPod({ capture: { ownerGroups: { include: [1.5], exclude: [] } } }), 1.5],
    ['capture.hostLoopbackCidr', sidecarPod({ capture: { hostLoopbackCidr: { family: 4, address: '10.0.0.0', prefix: 8 } } }), undefined],
    ['capture.dnsServers.v4[0]', sidecarPod({ proxy: { uid: 1, gid: 1, outboundPort: 1, inboundPort: 2, dnsPort: 3 }, capture: { dnsServers: { v4: ['::1'], v6: [] } } }), '::1'],
  ])('rejects bad %s naming the pod and field', (field, pod, value) => {
    expect(() => renderRules(pod, opts)).toThrow(PodRulesError);
    expect(() => renderRules(pod, opts)).toThrow(new RegExp(`pod default/golden: ${field.replace(/[.[\]]/g, '\\$&')}=`));
    if (value !== undefined) expect(() => renderRules(pod, opts)).toThrow(JSON.stringify(value));
  });

  test('owner groups "" (set but empty) returns every app connection before any capture', () => {
    const nat = renderRules(sidecarPod({ capture: { ownerGroups: { include: [], exclude: [] } } }), opts).v4.nat!.rules;
    const ret = nat.indexOf('-A SHUNT_OUTPUT -j RETURN');
    expect(ret).toBeGreaterThan(0);
    expect(ret).toBeLessThan(nat.indexOf('-A SHUNT_OUTPUT -j SHUNT_REDIRECT'));
  });

  test('per-pod DNS servers replace the node-wide option', () => {
    const pod = sidecarPod({ proxy: { uid: 1337, gid: 1337, outboundPort: 15001, inboundPort: 15006, dnsPort: 15053 }, capture: { dnsServers: { v4: ['198.18.0.53'], v6: [] } } });
    const nat = renderRules(pod, renderOptionsFrom({ dnsServers: { v4: ['198.18.9.9'], v6: [] } })).v4.nat!.rules;
    expect(nat).toContain('-A SHUNT_OUTPUT_DNS -d 198.18.0.53/32 -p udp -m udp --dport 53 -j REDIRECT --to-ports 15053');
    expect(nat.join('\n')).not.toContain('198.18.9.9');
  });

  test('ambient pods get the in-pod set (render-ambient.test.ts); sidecar-only settings on one are refused by field', () => {
    expect(() => renderRules(sidecarPod({ membership: 'ambient' }), opts)).toThrow(/^pod default\/golden: traffic\.inbound\.exclude=\[15008,15020,15021,15090\]: ambient pods exclude only the HBONE port 15008/);
  });

  test('bad backend options are refused', () => {
    expect(() => renderOptionsFrom({ tproxyMark: 0 })).toThrow(/tproxyMark/);
    expect(() => renderOptionsFrom({ tproxyTable: 254 })).toThrow(/tproxyTable/);
    expect(() => renderRules(sidecarPod({ proxy: { uid: 1, gid: 1, outboundPort: 1, inboundPort: 2, dnsPort: 3 } }), renderOptionsFrom({ dnsServers: { v4: ['nope'], v6: [] } }))).toThrow(/dnsServers\.v4/);
  });
});

describe('networkText spells addresses like iptables-save', () => {
  test.each([
    ['10.1.2.3', 8, 4, '10.0.0.0/8'],
    ['198.18.0.1', 32, 4, '198.18.0.1/32'],
    ['2001:DB8:0:0:0:0:0:1', 64, 6, '2001:db8::/64'],
    ['2001:db8:0:1:0:0:0:1', 128, 6, '2001:db8:0:1::1/128'],
    ['::1', 128, 6, '::1/128'],
    ['::6', 128, 6, '::6/128'],
    ['::ffff:198.18.0.1', 128, 6, '::ffff:198.18.0.1/128'],
    ['::127.0.0.53', 128, 6, '::127.0.0.53/128'],
    ['1:0:0:2:0:0:0:3', 128, 6, '1:0:0:2::3/128'],
    ['1:0:0:2:0:0:3:4', 128, 6, '1::2:0:0:3:4/128'],
    ['fe80::', 10, 6, 'fe80::/10'],
    ['::', 0, 6, '::/0'],
  ] as const)('%s/%d', (addr, prefix, fam, want) => {
    expect(networkText(addr, prefix, fam)).toBe(want);
  });
});
