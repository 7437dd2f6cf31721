/**
 * Capacity against the real kernel, with a tiny maxPods: every map is sized from it, a pod
 * beyond it fails with an error naming the setting (not retryable), and a failed enroll — by
 * the pod count or by a shared pool filling up mid-write — leaves no entry behind.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { MeshPod } from '@shunt/core';
import { BpfMap } from '@shunt/libbpf';
import { SockopsBackend } from './backend';
import { CapacityError, mapSizes } from './capacity';
import { MAP_NAMES } from './abi';
import { Sandbox, type Netns } from './test-support/sandbox';
import { PROXY_UID, sandboxPod } from './test-support/sandbox-pod';


function meshPod(name: string, ns: Netns, v4: string, excludePorts: number[] = []): MeshPod {
  return sandboxPod(ns, { name, namespace: 'cap', v4, inboundExclude: [15020], outbound: { excludePorts } });
}

describe('sockops capacity (maxPods 2)', () => {
  let sb: Sandbox;
  let nss: Netns[];
  let backend: SockopsBackend;
  const mapsDir = () => path.join(sb.bpffsRoot, 'sockops', 'maps');
  /** Entries of every per-pod map, read from the pins (what the kernel holds). */
  const entries = (): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const name of ['pod_cfg', 'pod_meta', 'pod_by_ip', 'port_sel', 'cidr4', 'cidr6', 'inbound_listener']) {
      const m = BpfMap.fromPin(path.join(mapsDir(), name));
      try {
        out[name] = m.keys().length;
      } finally {
        m.close();
      }
    }
    return out;
  };
  const netnsLinks = () => fs.readdirSync(path.join(sb.bpffsRoot, 'sockops', 'netns')).length;

  beforeAll(async () => {
    sb = new Sandbox();
    nss = ['a', 'b', 'c'].map((n) => sb.addNetns(n));
    for (const ns of nss) await sb.start(ns, PROXY_UID, 'proxy.js', ['15001', '15006']);
    backend = new SockopsBackend({ maxPods: 2 });
    await backend.start(sb.node());
  }, 60_000);

  afterAll(async () => {
    await backend?.stop({ cleanup: true }).catch(() => undefined);
    await sb?.dispose();
  });

  it('sizes every map from maxPods', () => {
    const want = mapSizes(2);
    for (const name of MAP_NAMES) {
      const m = BpfMap.fromPin(path.join(mapsDir(), name));
      try {
        if (want[name] !== undefined) expect([name, m.maxEntries]).toEqual([name, want[name]]);
      } finally {
        m.close();
      }
    }
    expect(backend.maxPods).toBe(2);
  });

  it('the pod beyond maxPods fails naming the setting, not retryable, and leaves nothing', async () => {
    await backend.enroll(meshPod('a', nss[0]!, '198.18.7.1'));
    await backend.enroll(meshPod('b', nss[1]!, '198.18.7.2'));
    const before = entries();
    expect(before.pod_cfg).toBe(2);
    const err = await backend.enroll(meshPod('c', nss[2]!, '198.18.7.3')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CapacityError);
    expect((err as CapacityError).retryable).toBe(false);
    expect((err as Error).message).toMatch(/pod cap\/c \(uid uid-c\): sockops map pod_cfg is full \(2 of 2 pods enrolled\); raise maxPods \(--max-pods .*now 2\)/);
    expect(entries()).toEqual(before);
    expect(netnsLinks()).toBe(2);
    const observed = await backend.observe();
    expect(observed.pods.map((p) => p.name).sort()).toEqual(['a', 'b']);
    expect(observed.nodeDetail['capacity']).toMatchObject({ maxPods: 2, pods: 2, podsLeft: 0, maps: { pod_cfg: { used: 2, max: 2 } } });
  });

  it('a shared pool filling up mid-write is rolled back: no partial selections, addresses or meta', async () => {
    await backend.unenroll({ uid: 'uid-b', namespace: 'cap', name: 'b' });
    const before = entries();
    // More exclude ports than port_sel holds ((2 + 64 slack) x 16): the write fails part-way.
    const ports = Array.from({ length: mapSizes(2).port_sel! + 10 }, (_, i) => 20_000 + i);
    const err = await backend.enroll(meshPod('big', nss[1]!, '198.18.7.9', ports)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CapacityError);
    expect((err as Error).message).toMatch(/sockops map port_sel is full .*raise maxPods/);
    expect(entries()).toEqual(before);
    expect(netnsLinks()).toBe(1);
    // The room is still there for a normal pod.
    await backend.enroll(meshPod('b', nss[1]!, '198.18.7.2'));
    expect(entries().pod_cfg).toBe(2);
  });

  it('a restart with another maxPods keeps the pinned sizes (resizing needs a cleanup)', async () => {
    await backend.stop({ cleanup: false });
    const warnings: string[] = [];
    const node = { ...sb.node(), log: { ...sb.node().log, warn: (_o: object, msg?: string) => void warnings.push(msg ?? '') } };
    backend = new SockopsBackend({ maxPods: 50 });
    await backend.start(node);
    expect(backend.maxPods).toBe(2);
    expect(warnings.join('\n')).toMatch(/pinned maps keep their size; the new maxPods takes effect after `shunt cleanup`/);
    expect((await backend.observe()).pods).toHaveLength(2);
  });
  it('summarize() (what /metrics reads) is the kernel\'s entry counts, not what the backend remembers writing', async () => {
    const counted = (): Record<string, number> => {
      const e = entries();
      delete e['inbound_listener'];
      return e;
    };
    const s = await backend.summarize();
    expect(s).toMatchObject({ backend: 'sockops', nodeReady: true, pods: 2 });
    const used = (x: typeof s) => Object.fromEntries(Object.entries((x.nodeDetail['capacity'] as { maps: Record<string, { used: number }> }).maps).map(([k, v]) => [k, v.used]));
    expect(used(s)).toEqual(counted());
    expect(s.counters).toEqual((await backend.observe()).counters);
    // A pod's entries removed behind the backend's back: the next summary shows it.
    const cfg = BpfMap.fromPin(path.join(mapsDir(), 'pod_cfg'));
    try {
      const [first] = cfg.keys();
      expect(cfg.delete(first!)).toBe(true);
    } finally {
      cfg.close();
    }
    const after = await backend.summarize();
    expect(after.pods).toBe(1);
    expect(used(after)).toEqual(counted());
    expect(after.nodeDetail['capacity']).toMatchObject({ pods: 1, podsLeft: 1 });
  });
});
