// support() and start() under the two profiles: the iptables backend does sidecar capture only, so
// on an istio-ambient node it says no (naming the tc backend), and an ambient pod that reaches
// enroll() anyway is refused by name.

import { CAPABILITY_FIXTURES, type NodeContext } from '@shunt/core';
import { IptablesBackend } from './backend';
import { PodRulesError } from './errors';
import { sidecarPod } from './__fixtures__/pods';

const caps = CAPABILITY_FIXTURES['6.18'];
const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const node = (profile: NodeContext['profile']): NodeContext => ({ nodeName: 'n1', profile, caps, cgroupRoot: '/', bpffsRoot: '/sys/fs/bpf/shunt', log: quiet });

test('support: yes for istio-sidecar (or no profile given), no for istio-ambient with the reason', () => {
  expect(new IptablesBackend({ stateDir: null }).support(caps)).toEqual({ ok: true });
  expect(new IptablesBackend({ stateDir: null, profile: 'istio-sidecar' }).support(caps)).toEqual({ ok: true });
  const s = new IptablesBackend({ stateDir: null, profile: 'istio-ambient' }).support(caps);
  expect(s.ok).toBe(false);
  expect(!s.ok && s.reasons).toEqual([expect.stringMatching(/^profile istio-ambient: ambient pods need the tc backend/)]);
});

test('start refuses a node serving istio-ambient, naming the node and the tc backend', async () => {
  await expect(new IptablesBackend({ stateDir: null }).start(node('istio-ambient'))).rejects.toThrow(/^iptables backend cannot run on node n1: profile istio-ambient: ambient pods need the tc backend/);
});

test('enroll of an ambient pod names the pod and the tc backend, and touches nothing', async () => {
  const b = new IptablesBackend({ stateDir: null });
  await b.start(node('istio-sidecar'));
  const ambient = sidecarPod({ uid: 'uid-amb', namespace: 'shop', name: 'cart-7d9', membership: 'ambient', netnsPath: '/nonexistent/netns' });
  const err = await b.enroll(ambient).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(PodRulesError);
  expect((err as Error).message).toMatch(/^pod shop\/cart-7d9: membership="ambient": ambient pods need the tc backend \(redirect to the node ztunnel\); the iptables backend implements only sidecar capture/);
  expect(b.fingerprint(ambient)).toMatch(/^ipt1:invalid:pod shop\/cart-7d9/);
  expect((await b.observe()).pods).toEqual([]);
});
