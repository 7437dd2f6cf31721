import type { MeshPod } from '@shunt/core';
import { POD_FLAG, SEL } from './abi';
import { PodConfigError, canonical, fingerprintOf, podConfig } from './pod-config';

const base: MeshPod = {
  uid: 'u-1',
  namespace: 'ns',
  name: 'web',
  profile: 'istio-ambient',
  membership: 'ambient',
  hostNetwork: false,
  ips: { v4: ['198.18.0.5'], v6: ['2001:db8:0:0::5'] },
  netnsPath: '/var/run/netns/x',
  interceptionMode: 'REDIRECT',
  proxy: { uid: 1337, gid: 1337, outboundPort: 15001, inboundPort: 15006, tunnelPort: 15008 },
  traffic: {
    inbound: { include: '*', exclude: [15008] },
    outbound: { includePorts: [], excludePorts: [], includeCidrs: '*', excludeCidrs: [] },
  },
};
const pod = (patch: Partial<MeshPod> & { traffic?: MeshPod['traffic'] }): MeshPod => ({ ...base, ...patch });

describe('podConfig', () => {
  it('translates an ambient pod: capture-all flags, the HBONE exclude, canonical addresses', () => {
    expect(podConfig(base)).toEqual({
      ref: { uid: 'u-1', namespace: 'ns', name: 'web' },
      flags: POD_FLAG.IN_ALL | POD_FLAG.OUT_ALL,
      outPort: 15001,
      inPort: 15006,
      tunnelPort: 15008,
      dnsPort: 0,
      ports: [{ kind: SEL.IN_EXCLUDE, port: 15008 }],
      ips: ['198.18.0.5', '2001:db8::5'],
    });
  });

  it('inbound bypass (include []) and port lists become selections; equal configs fingerprint equally', () => {
    const c = podConfig(pod({ traffic: { inbound: { include: [], exclude: [15008] }, outbound: { ...base.traffic.outbound, excludePorts: [22, 22] } } }));
    expect(c.flags).toBe(POD_FLAG.OUT_ALL);
    expect(c.ports).toEqual([
      { kind: SEL.OUT_EXCLUDE, port: 22 },
      { kind: SEL.IN_EXCLUDE, port: 15008 },
    ]);
    expect(fingerprintOf(podConfig(base))).toBe(fingerprintOf(podConfig({ ...base, ips: { v4: ['198.18.0.5'], v6: ['2001:db8::5'] } })));
    expect(canonical(c)).not.toBe(canonical(podConfig(base)));
  });

  it.each<[string, Partial<MeshPod>, RegExp]>([
    ['no addresses', { ips: { v4: [], v6: [] } }, /pod ns\/web \(uid u-1\): ips=.*it has none yet/],
    ['a bad address', { ips: { v4: ['198.18.0.300'], v6: [] } }, /ips\.v4\[0\]="198\.18\.0\.300": not an IP address/],
    ['a bad port', { proxy: { ...base.proxy, outboundPort: 0 } }, /proxy\.outboundPort=0: not a port/],
    [
      'per-CIDR outbound capture',
      { traffic: { ...base.traffic, outbound: { ...base.traffic.outbound, includeCidrs: [{ family: 4, address: '10.0.0.0', prefix: 8 }] } } },
      /traffic\.outbound\.includeCidrs=.*captures '\*' or nothing/,
    ],
    ['an over-long name', { name: 'x'.repeat(300) }, /name=.*longer than 256 bytes/],
  ])('refuses %s with an error naming pod, field and value', (_what, patch, re) => {
    expect(() => podConfig(pod(patch))).toThrow(PodConfigError);
    expect(() => podConfig(pod(patch))).toThrow(re);
  });
});
