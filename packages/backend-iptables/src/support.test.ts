// support() and start() under the two profiles: the iptables backend serves both (istio-iptables'
// sidecar set and istio-cni's ambient in-pod set), so on an istio-ambient node it is the fallback
// after tc; an ambient pod with settings the in-pod rules cannot express is refused by name.

import { CAPABILITY_FIXTURES, type NodeContext } from '@shunt/core';
import { IptablesBackend } from './backend';
import { PodRulesError } from './errors';
import { ambientPod } from './__fixtures__/ambient-pods';

const caps = CAPABILITY_FIXTURES['6.18'];
const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const node = (profile: NodeContext['profile']): NodeContext => ({ nodeName: 'n1', profile, caps, cgroupRoot: '/', bpffsRoot: '/sys/fs/bpf/shunt', log: quiet });

test('support: yes for istio-sidecar, istio-ambient, or no profile given', () => {
  expect(new IptablesBackend({ stateDir: null }).support(caps)).toEqual({ ok: true });
  expect(new IptablesBackend({ stateDir: null, profile: 'istio-sidecar' }).support(caps)).toEqual({ ok: true });
  expect(new IptablesBackend({ stateDir: null, profile: 'istio-ambient' }).support(caps)).toEqual({ ok: true });
});

test('start accepts a node serving istio-ambient', async () => {
  await expect(new IptablesBackend({ stateDir: null }).start(node('istio-ambient'))).resolves.toBeUndefined();
});

test('enroll of an ambient pod with a setting the in-pod rules cannot express names pod, field and value, and touches nothing', async () => {
  const b = new IptablesBackend({ stateDir: null });
  await b.start(node('istio-ambient'));
  const bad = ambientPod({ uid: 'uid-amb', namespace: 'shop', name: 'cart-7d9', interceptionMode: 'TPROXY', netnsPath: '/nonexistent/netns' });
  const err = await b.enroll(bad).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(PodRulesError);
  expect((err as Error).message).toMatch(/^pod shop\/cart-7d9: interceptionMode="TPROXY": ambient pods are captured with REDIRECT/);
  expect(b.fingerprint(bad)).toMatch(/^ipt1:invalid:pod shop\/cart-7d9/);
  expect((await b.observe()).pods).toEqual([]);
});
