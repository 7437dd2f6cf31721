import type { MeshPod } from '@shunt/core';
import { OWNER, POD_FLAG, SEL } from './abi';
import { PodConfigError, assertPodSupported, canonical, podProgram } from './pod-program';
import { sockopsPodSupport } from './pod-support';

const base: MeshPod = {
  uid: 'u1',
  namespace: 'ns',
  name: 'p',
  profile: 'istio-sidecar',
  membership: 'sidecar',
  hostNetwork: false,
  ips: { v4: ['198.18.0.1'], v6: [] },
  interceptionMode: 'REDIRECT',
  proxy: { uid: 1337, gid: 1337, outboundPort: 15001, inboundPort: 15006 },
  traffic: { inbound: { include: '*', exclude: [15008] }, outbound: { includePorts: [], excludePorts: [], includeCidrs: '*', excludeCidrs: [] } },
};

describe('per-pod support: options with no meaning at the socket layer', () => {
  it.each([
    [{ excludeInterfaces: ['net1'] }, /traffic\.sidecar\.istio\.io\/excludeInterfaces="net1": the sockops backend cannot exclude interfaces/],
    [{ rerouteInterfaces: ['net1', 'net2'] }, /istio\.io\/reroute-virtual-interfaces \(or traffic\.sidecar\.istio\.io\/kubevirtInterfaces\)="net1,net2": .*cannot reroute/],
    [{ dropInvalid: true }, /istio-proxy env INVALID_DROP=true: .*conntrack-INVALID/],
  ] as const)('%j is refused by supportPod and enroll, naming the setting', (capture, why) => {
    const pod: MeshPod = { ...base, capture: { ...capture } as MeshPod['capture'] };
    const s = sockopsPodSupport(pod);
    expect(s.ok).toBe(false);
    expect(!s.ok && s.reasons.join('\n')).toMatch(why);
    expect(!s.ok && s.reasons.join('\n')).toMatch(/redirectMode=iptables/);
    expect(() => assertPodSupported(pod)).toThrow(PodConfigError);
    expect(() => assertPodSupported(pod)).toThrow(/^pod ns\/p \(uid u1\): /);
    // fingerprint() (podProgram) stays total: the reconciler calls it for every upsert.
    expect(() => podProgram(pod, 1n)).not.toThrow();
  });

  it('every gap is listed, and pods without them are fine', () => {
    const s = sockopsPodSupport({ capture: { excludeInterfaces: ['a'], dropInvalid: true } });
    expect(!s.ok && s.reasons).toHaveLength(2);
    expect(sockopsPodSupport(base)).toEqual({ ok: true });
    expect(sockopsPodSupport({ capture: { ownerGroups: { include: [5], exclude: [] }, hostLoopbackCidr: { family: 4, address: '127.0.0.0', prefix: 8 } } })).toEqual({ ok: true });
  });
});

describe('podProgram: the socket-layer options', () => {
  it('defaults: loopback 127.0.0.1/32, tunnel 15008, no owners, no new flags', () => {
    const p = podProgram(base, 1n);
    expect(p).toMatchObject({ flags: POD_FLAG.INBOUND_ALL, loNet4: 0x7f000001, loPrefix4: 32, tunnelPort: 15008, owners: [] });
  });

  it('extra proxy ids, owner groups, loopback range, loopback include, per-pod DNS servers', () => {
    const pod: MeshPod = {
      ...base,
      proxy: { ...base.proxy, extraUids: [2500], extraGids: [2600, 2601], dnsPort: 15053 },
      traffic: { ...base.traffic, outbound: { ...base.traffic.outbound, includeCidrs: [{ family: 4, address: '127.1.2.3', prefix: 32 }] } },
      capture: { ownerGroups: { include: '*', exclude: [3100] }, hostLoopbackCidr: { family: 4, address: '127.0.0.0', prefix: 8 }, dnsServers: { v4: ['198.18.0.53'], v6: ['2001:db8::53'] } },
    };
    const p = podProgram(pod, 1n);
    expect(p.flags).toBe(POD_FLAG.INBOUND_ALL | POD_FLAG.EXTRA_IDS | POD_FLAG.GROUPS_EXCEPT | POD_FLAG.LO_INCLUDED | POD_FLAG.DNS_LISTED);
    expect(p.owners).toEqual([
      { kind: OWNER.PROXY_UID, id: 2500 },
      { kind: OWNER.PROXY_GID, id: 2600 },
      { kind: OWNER.PROXY_GID, id: 2601 },
      { kind: OWNER.GROUP, id: 3100 },
    ]);
    expect(p.loNet4).toBe(0x7f000000);
    expect(p.loPrefix4).toBe(8);
    expect(p.cidrs).toEqual(
      expect.arrayContaining([
        { kind: SEL.DNS_SERVER, family: 4, address: '198.18.0.53', prefix: 32 },
        { kind: SEL.DNS_SERVER, family: 6, address: '2001:db8::53', prefix: 128 },
      ]),
    );
    // Include list: only listed groups are captured.
    const only = podProgram({ ...base, capture: { ownerGroups: { include: [7, 8], exclude: [9] } } }, 1n);
    expect(only.flags & (POD_FLAG.GROUPS_ONLY | POD_FLAG.GROUPS_EXCEPT)).toBe(POD_FLAG.GROUPS_ONLY);
    expect(only.owners).toEqual([{ kind: OWNER.GROUP, id: 7 }, { kind: OWNER.GROUP, id: 8 }]);
    // Each option changes what the kernel holds, so it changes the fingerprint.
    expect(new Set([canonical(podProgram(base, 1n)), canonical(p), canonical(only)]).size).toBe(3);
  });

  it('rejects bad values naming the field', () => {
    expect(() => podProgram({ ...base, proxy: { ...base.proxy, extraUids: [-1] } }, 1n)).toThrow(/proxy\.extraUids\[0\]=-1/);
    expect(() => podProgram({ ...base, capture: { hostLoopbackCidr: { family: 4, address: '10.0.0.0', prefix: 8 } } }, 1n)).toThrow(/capture\.hostLoopbackCidr/);
    expect(() => podProgram({ ...base, proxy: { ...base.proxy, dnsPort: 15053 }, capture: { dnsServers: { v4: ['nope'], v6: [] } } }, 1n)).toThrow(/capture\.dnsServers\.v4\[0\]/);
  });
});
