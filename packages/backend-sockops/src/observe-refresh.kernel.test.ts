/**
 * observe() keeps the backend's record of a pod that reads the same from the kernel (no churn of
 * long-lived records at every scrape), but a pod whose kernel entries drifted must be replaced by
 * what the kernel holds, so the next enroll sees the drift and rewrites the pod.
 */
import * as path from 'node:path';
import type { MeshPod } from '@shunt/core';
import { BpfMap } from '@shunt/libbpf';
import { SockopsBackend } from './backend';
import { Sandbox, type Netns } from './test-support/sandbox';
import { PROXY_UID, sandboxPod } from './test-support/sandbox-pod';


function meshPod(name: string, ns: Netns, v4: string): MeshPod {
  return sandboxPod(ns, { name, namespace: 'refresh', v4, inboundExclude: [15020, 15021], outbound: { excludePorts: [8081] } });
}

describe('sockops observe() refreshes its records from the kernel', () => {
  let sb: Sandbox;
  let ns: Netns;
  let backend: SockopsBackend;

  beforeAll(async () => {
    sb = new Sandbox();
    ns = sb.addNetns('a');
    await sb.start(ns, PROXY_UID, 'proxy.js', ['15001', '15006']);
    backend = new SockopsBackend();
    await backend.start(sb.node());
  }, 60_000);

  afterAll(async () => {
    await backend?.stop({ cleanup: true }).catch(() => undefined);
    await sb?.dispose();
  });

  it('a drifted selection seen by observe() is rewritten by the next enroll', async () => {
    const pod = meshPod('a', ns, '198.18.0.2');
    const want = backend.fingerprint(pod);
    await backend.enroll(pod);
    const fp = async () => (await backend.observe()).pods.find((p) => p.uid === pod.uid)?.fingerprint;
    expect(await fp()).toBe(want);
    expect(await fp()).toBe(want); // a second reading, records kept

    // Drift: one of the pod's port selections disappears from the kernel.
    const portSel = BpfMap.fromPin(path.join(sb.bpffsRoot, 'sockops', 'maps', 'port_sel'));
    try {
      const keys = portSel.keys();
      expect(keys.length).toBeGreaterThan(0);
      expect(portSel.delete(keys[0]!)).toBe(true);
    } finally {
      portSel.close();
    }
    expect(await fp()).not.toBe(want);
    await backend.enroll(pod);
    expect(await fp()).toBe(want);
  }, 60_000);
});
