import { BackendUnsupportedError } from '../errors';
import type { BackendName, NodeCapabilities, RedirectMode } from '../types';
import { CAPABILITY_FIXTURES, capabilitiesFor, type CapabilityFixtureName } from './fixtures';
import { formatKernel } from '../kernel';
import { BPF_FEATURE_PROBES } from '../probe/bpf-features';
import { FEATURE_SINCE, SUPPORT_RULES, optionalFeatures, supportFromRules, upstreamSince } from './rules';
import { rulesBackend, selectBackend } from './select';

const ALL = (['sockops', 'tc', 'iptables'] as BackendName[]).map(rulesBackend);
const pick = (mode: RedirectMode, caps: NodeCapabilities, profile: 'istio-sidecar' | 'istio-ambient'): BackendName | 'none' => {
  try {
    return selectBackend(mode, caps, ALL, { profile }).chosen.name;
  } catch (err) {
    // Only "no backend can serve this" means none; any other exception is a bug the table must show.
    if (err instanceof BackendUnsupportedError && /no backend can run on this node/.test(err.message)) return 'none';
    throw err;
  }
};

describe('backend selection table (redirectMode=auto)', () => {
  // [fixture, istio-sidecar choice, istio-ambient choice (tc, else iptables: istio-cni's in-pod rules), tc supported]
  it.each<[CapabilityFixtureName, BackendName, BackendName | 'none', boolean]>([
    ['4.19', 'iptables', 'iptables', false], // no cgroup sockopt (5.3), no netns cookie, no sk_assign
    ['5.4', 'iptables', 'iptables', false], // sockopt yes, get_netns_cookie not yet
    ['5.7', 'iptables', 'iptables', false], // netns cookie in cgroup hooks only; tc: no tcx
    ['5.10', 'iptables', 'iptables', false], // no get_netns_cookie in sock_ops/sk_msg/sockopt (5.15)
    ['5.15', 'sockops', 'iptables', false], // the first upstream release with everything sockops needs
    ['6.1', 'sockops', 'iptables', false],
    ['6.6', 'sockops', 'tc', true], // tcx links, sk_assign of reuseport listeners
    ['6.18', 'sockops', 'tc', true],
    ['backport-4.18', 'sockops', 'iptables', false], // old version, new features: probes decide (tc: below its 6.6 floor)
    ['nosockopt-6.1', 'iptables', 'iptables', false], // new version, feature missing: probes decide
    ['nosockopt-6.6', 'iptables', 'tc', true],
    ['backport-3.10', 'iptables', 'iptables', false], // below the floor whatever the probes say
  ])('%s → sidecar: %s, ambient: %s', (fixture, sidecar, ambient, tcx) => {
    const caps = CAPABILITY_FIXTURES[fixture];
    expect(pick('auto', caps, 'istio-sidecar')).toBe(sidecar);
    expect(pick('auto', caps, 'istio-ambient')).toBe(ambient);
    expect(supportFromRules('tc', caps).ok).toBe(tcx);
    expect(optionalFeatures('tc', caps).includes('link:tcx')).toBe(caps.features['link:tcx'].available);
  });

  it('says why each backend was not chosen', () => {
    const s = selectBackend('auto', CAPABILITY_FIXTURES['5.4'], ALL, { profile: 'istio-sidecar' });
    expect(s.chosen.name).toBe('iptables');
    expect(s.rejected).toEqual([
      { name: 'tc', reasons: ['tc does not serve for profile istio-sidecar'] },
      {
        name: 'sockops',
        reasons: [
          expect.stringMatching(/^prog:sk_lookup unavailable \(upstream since 5\.9; sk_lookup steers inbound .*\): fixture: not in this release/),
          expect.stringMatching(/^attach:cgroup_getpeername unavailable \(upstream since 5\.8/),
          expect.stringMatching(/^attach:cgroup_sock_release unavailable \(upstream since 5\.9/),
          expect.stringMatching(/^helper:get_netns_cookie unavailable \(upstream since 5\.15; every program identifies the pod by its netns cookie\): fixture/),
          expect.stringMatching(/^helper:get_socket_cookie unavailable \(upstream since 5\.7/),
        ],
      },
    ]);
    expect(s.table.map((r) => [r.name, r.support.ok, r.chosen])).toEqual([
      ['sockops', false, false],
      ['iptables', true, true],
    ]);
    const later = selectBackend('auto', CAPABILITY_FIXTURES['6.18'], ALL, { profile: 'istio-sidecar' });
    expect(later.rejected.find((r) => r.name === 'iptables')!.reasons).toEqual(['supported, but sockops comes first']);
  });

  it('istio-ambient: iptables is the fallback after tc, and a forced iptables serves it', () => {
    const newer = selectBackend('auto', CAPABILITY_FIXTURES['6.18'], ALL, { profile: 'istio-ambient' });
    expect(newer.chosen.name).toBe('tc');
    expect(newer.table.map((r) => [r.name, r.support.ok, r.chosen])).toEqual([
      ['tc', true, true],
      ['iptables', true, false],
    ]);
    expect(newer.rejected).toEqual(expect.arrayContaining([{ name: 'iptables', reasons: ['supported, but tc comes first'] }, { name: 'sockops', reasons: ['sockops does not serve for profile istio-ambient'] }]));
    const older = selectBackend('auto', CAPABILITY_FIXTURES['5.4'], ALL, { profile: 'istio-ambient' });
    expect(older.chosen.name).toBe('iptables');
    expect(older.rejected.find((r) => r.name === 'tc')!.reasons.join('; ')).toMatch(/helper:sk_assign unavailable|redirect_peer|tcx/);
    expect(selectBackend('iptables', CAPABILITY_FIXTURES['6.18'], ALL, { profile: 'istio-ambient' }).chosen.name).toBe('iptables');
  });

  it('5.10: sockops refused for get_netns_cookie alone, with the verdict of every program type in the evidence', () => {
    const r = supportFromRules('sockops', CAPABILITY_FIXTURES['5.10']);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.reasons).toHaveLength(1);
    expect(r.reasons[0]).toMatch(/^helper:get_netns_cookie unavailable \(upstream since 5\.15; /);
    for (const part of [
      'get_netns_cookie from cgroup_sock_addr: yes (since 5.7)',
      'get_netns_cookie from sock_ops: NO (since 5.15)',
      'get_netns_cookie from sk_msg: NO (since 5.15)',
      'get_netns_cookie from cgroup_sockopt: NO (since 5.15)',
    ])
      expect(r.reasons[0]).toContain(part);
  });

  it('a backported 4.18 passes on probes although its release is older than every feature', () => {
    expect(supportFromRules('sockops', CAPABILITY_FIXTURES['backport-4.18'])).toEqual({ ok: true });
    expect(supportFromRules('sockops', capabilitiesFor('4.18.0-80.el8.x86_64'))).toMatchObject({ ok: false });
  });

  it('the floor and the features are both reported', () => {
    const r = supportFromRules('sockops', CAPABILITY_FIXTURES['backport-3.10']);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.reasons[0]).toBe('kernel 3.10.0-1160.el7.x86_64 is below the sockops floor 4.18');
    expect(r.reasons.slice(1)).toEqual([expect.stringMatching(/^cgroup2 unavailable \(upstream since 4\.5; /), expect.stringMatching(/^bpffs unavailable/)]);
  });

  it('without a profile the global order sockops → tc → iptables applies', () => {
    expect(selectBackend('auto', CAPABILITY_FIXTURES['6.1'], ALL).chosen.name).toBe('sockops');
    expect(selectBackend('auto', CAPABILITY_FIXTURES['nosockopt-6.6'], ALL).chosen.name).toBe('tc');
    expect(selectBackend('auto', CAPABILITY_FIXTURES['5.4'], ALL).chosen.name).toBe('iptables');
  });

  it('no runnable backend → error listing every reason', () => {
    const caps = capabilitiesFor('5.4.0', { 'iptables:legacy': false, 'iptables:nft': false });
    expect(() => selectBackend('auto', caps, ALL, { profile: 'istio-sidecar' })).toThrow(BackendUnsupportedError);
    expect(() => selectBackend('auto', caps, ALL, { profile: 'istio-sidecar' })).toThrow(/sockops: .*get_netns_cookie.* \| iptables: none of iptables:legacy, iptables:nft works/);
  });
});

describe('forced redirectMode', () => {
  it('a mode the node can run is used and the others are reported as not chosen', () => {
    const s = selectBackend('iptables', CAPABILITY_FIXTURES['6.18'], ALL, { profile: 'istio-sidecar' });
    expect(s.chosen.name).toBe('iptables');
    expect(s.rejected.find((r) => r.name === 'sockops')!.reasons).toEqual(['redirectMode=iptables was forced']);
  });

  it('a mode the node cannot run fails with the reasons', () => {
    const run = () => selectBackend('sockops', CAPABILITY_FIXTURES['4.19'], ALL, { profile: 'istio-sidecar' });
    expect(run).toThrow(BackendUnsupportedError);
    expect(run).toThrow(/redirectMode=sockops cannot run on this node: .*prog:cgroup_sockopt unavailable \(upstream since 5\.3; /);
    try {
      run();
    } catch (err) {
      expect((err as BackendUnsupportedError).rejected.find((r) => r.name === 'sockops')!.reasons.length).toBeGreaterThan(0);
    }
  });

  it('a mode that does not serve the profile, or is not built in, fails', () => {
    expect(() => selectBackend('tc', CAPABILITY_FIXTURES['6.18'], ALL, { profile: 'istio-sidecar' })).toThrow(/tc does not serve for profile istio-sidecar/);
    expect(() => selectBackend('sockops', CAPABILITY_FIXTURES['6.18'], [rulesBackend('iptables')])).toThrow(/no sockops backend is available/);
  });

  it('a throwing support() is a reason, not a crash', () => {
    const broken = { name: 'sockops' as const, support: () => { throw new Error('boom'); } };
    const s = selectBackend('auto', CAPABILITY_FIXTURES['6.18'], [broken, rulesBackend('iptables')], { profile: 'istio-sidecar' });
    expect(s.chosen.name).toBe('iptables');
    expect(s.rejected.find((r) => r.name === 'sockops')!.reasons).toEqual(['support() threw: boom']);
  });
});

describe('SUPPORT_RULES data', () => {
  it('every required feature says what it is needed for', () => {
    for (const rule of Object.values(SUPPORT_RULES)) for (const r of rule.features) expect(r.why.length).toBeGreaterThan(10);
  });

  it('upstream releases by which each backend has everything', () => {
    expect(formatKernel(upstreamSince('sockops'))).toBe('5.15');
    expect(formatKernel(upstreamSince('tc'))).toBe('6.6');
    expect(formatKernel(upstreamSince('iptables'))).toBe('3.10');
  });

  it('a multi-part feature is as new as its newest part', () => {
    expect(formatKernel(FEATURE_SINCE['helper:get_netns_cookie'])).toBe('5.15');
    expect(formatKernel(FEATURE_SINCE['helper:get_socket_cookie'])).toBe('5.7');
    expect(BPF_FEATURE_PROBES['helper:get_netns_cookie'].map((p) => (p.call.kind === 'helper' ? p.call.progType : ''))).toEqual([
      'cgroup_sock_addr',
      'sock_ops',
      'sk_msg',
      'cgroup_sockopt',
    ]);
  });

  it('every required feature of every backend is a probed feature', () => {
    const probed = Object.keys(CAPABILITY_FIXTURES['6.18'].features);
    for (const rule of Object.values(SUPPORT_RULES)) {
      for (const f of [...rule.features.map((r) => r.feature), ...rule.anyOf.flat(), ...rule.optional]) expect(probed).toContain(f);
    }
  });
});
