import { CAPABILITY_FIXTURES, rulesBackend, selectBackend } from '@shunt/core';
import type { BackendName } from '@shunt/core';
import { buildDoctorReport, formatDoctor } from './report';

const backends = (['sockops', 'tc', 'iptables'] as BackendName[]).map(rulesBackend) as { name: BackendName; support: (c: never) => never }[];

it.each(Object.keys(CAPABILITY_FIXTURES))('explains the choice and every rejection on a %s node', (fixture) => {
  const caps = CAPABILITY_FIXTURES[fixture as keyof typeof CAPABILITY_FIXTURES];
  const r = buildDoctorReport(caps, 'auto', 'istio-sidecar', backends, () => selectBackend('auto', caps, backends, { profile: 'istio-sidecar' }));
  const text = formatDoctor(r);
  if (r.choice) {
    expect(text).toContain(`redirectMode=auto → ${r.choice}`);
    for (const b of r.backends.filter((x) => !x.chosen)) expect(b.reasons.length).toBeGreaterThan(0);
  } else {
    expect(r.error).toBeTruthy();
    expect(text).toContain('no backend can run');
  }
  expect(r.features.length).toBe(Object.keys(caps.features).length);
});

it('reports a forced mode the node cannot run, with the reason', () => {
  const caps = CAPABILITY_FIXTURES['4.19'];
  const r = buildDoctorReport(caps, 'sockops', 'istio-sidecar', backends, () => selectBackend('sockops', caps, backends, { profile: 'istio-sidecar' }));
  expect(r.choice).toBeNull();
  expect(r.error).toMatch(/redirectMode=sockops cannot run/);
  expect(r.backends.find((b) => b.name === 'sockops')!.reasons.length).toBeGreaterThan(0);
});

it('says "not chosen", not "can run", for a backend the kernel supports but the profile excludes', () => {
  const caps = CAPABILITY_FIXTURES['6.18'];
  const r = buildDoctorReport(caps, 'auto', 'istio-ambient', backends, () => selectBackend('auto', caps, backends, { profile: 'istio-ambient' }));
  const line = formatDoctor(r).split('\n').find((l) => l.trimStart().startsWith('sockops'));
  expect(line).toMatch(/not chosen\s+.*istio-ambient/);
});

it('on 5.10 says sockops cannot run for get_netns_cookie, with the probe verdict per program type', () => {
  const caps = CAPABILITY_FIXTURES['5.10'];
  const r = buildDoctorReport(caps, 'auto', 'istio-sidecar', backends, () => selectBackend('auto', caps, backends, { profile: 'istio-sidecar' }));
  expect(r.choice).toBe('iptables');
  const line = formatDoctor(r).split('\n').find((l) => l.trimStart().startsWith('sockops'))!;
  expect(line).toMatch(/cannot run\s+helper:get_netns_cookie unavailable \(upstream since 5\.15; /);
  expect(line).toContain('get_netns_cookie from sock_ops: NO (since 5.15)');
});

it.each<[string, BackendName, string]>([
  ['6.18', 'tc', 'not chosen'],
  ['5.4', 'iptables', 'CHOSEN'],
])('istio-ambient on %s: both ambient backends listed in order tc → iptables, %s chosen', (fixture, chosen, iptablesVerdict) => {
  const caps = CAPABILITY_FIXTURES[fixture as keyof typeof CAPABILITY_FIXTURES];
  const r = buildDoctorReport(caps, 'auto', 'istio-ambient', backends, () => selectBackend('auto', caps, backends, { profile: 'istio-ambient' }));
  expect(r.choice).toBe(chosen);
  expect(r.order).toEqual(['tc', 'iptables']);
  const text = formatDoctor(r);
  expect(text).toContain('profile=istio-ambient, auto order tc → iptables');
  const rows = text.split('\n').filter((l) => /^  (sockops|tc|iptables) /.test(l));
  expect(rows.map((l) => l.trim().split(/\s+/)[0])).toEqual(['tc', 'iptables', 'sockops']);
  expect(rows[1]).toMatch(new RegExp(`^  iptables\\s+${iptablesVerdict}`));
  if (chosen === 'tc') expect(rows[1]).toContain('supported, but tc comes first');
  else expect(rows[0]).toMatch(/^  tc\s+cannot run\s+\S/);
  expect(rows[2]).toMatch(/sockops does not serve for profile istio-ambient/);
});
