import type { MeshPod } from '@shunt/core';
import { SEL, POD_FLAG_INBOUND_ALL } from './abi';
import { PodConfigError, canonical, fingerprintOf, podProgram } from './pod-program';

const base: MeshPod = {
  uid: 'u1',
  namespace: 'ns',
  name: 'p',
  profile: 'istio-sidecar',
  membership: 'sidecar',
  hostNetwork: false,
  ips: { v4: ['198.18.0.1'], v6: ['2001:db8:0::1'] },
  interceptionMode: 'REDIRECT',
  proxy: { uid: 1337, gid: 1337, outboundPort: 15001, inboundPort: 15006 },
  traffic: {
    inbound: { include: [8080, 9090], exclude: [15020] },
    outbound: {
      includePorts: [3306],
      excludePorts: [22],
      includeCidrs: [{ family: 4, address: '10.1.2.3', prefix: 16 }],
      excludeCidrs: [{ family: 6, address: '2001:db8:1::5', prefix: 48 }],
    },
  },
};

describe('podProgram', () => {
  it('encodes selections, canonical CIDRs and addresses', () => {
    const p = podProgram(base, 7n);
    expect(p.netnsCookie).toBe(7n);
    expect(p.flags).toBe(0);
    expect(p.ports).toEqual(
      expect.arrayContaining([
        { kind: SEL.IN_INCLUDE, port: 8080 },
        { kind: SEL.IN_INCLUDE, port: 9090 },
        { kind: SEL.IN_EXCLUDE, port: 15020 },
        { kind: SEL.OUT_INCLUDE, port: 3306 },
        { kind: SEL.OUT_EXCLUDE, port: 22 },
      ]),
    );
    expect(p.cidrs).toEqual(
      expect.arrayContaining([
        { kind: SEL.OUT_INCLUDE, family: 4, address: '10.1.0.0', prefix: 16 },
        { kind: SEL.OUT_EXCLUDE, family: 6, address: '2001:db8:1::', prefix: 48 },
      ]),
    );
    expect(p.ips).toEqual(['198.18.0.1', '2001:db8::1']);
  });

  it('carries the DNS capture port (0 = off) and rejects a bad one naming the pod and field', () => {
    expect(podProgram(base, 1n).dnsPort).toBe(0);
    const dns = { ...base, proxy: { ...base.proxy, dnsPort: 15053 } };
    expect(podProgram(dns, 1n).dnsPort).toBe(15053);
    expect(fingerprintOf(podProgram(dns, 1n))).not.toBe(fingerprintOf(podProgram(base, 1n)));
    expect(() => podProgram({ ...base, proxy: { ...base.proxy, dnsPort: 70000 } }, 1n)).toThrow(
      'pod ns/p (uid u1): proxy.dnsPort=70000: not a port (1..65535)',
    );
  });

  it("turns '*' into the inbound-all flag and both default routes", () => {
    const p = podProgram(
      { ...base, traffic: { ...base.traffic, inbound: { include: '*', exclude: [] }, outbound: { ...base.traffic.outbound, includeCidrs: '*' } } },
      1n,
    );
    expect(p.flags & POD_FLAG_INBOUND_ALL).toBeTruthy();
    expect(p.cidrs).toEqual(
      expect.arrayContaining([
        { kind: SEL.OUT_INCLUDE, family: 4, address: '0.0.0.0', prefix: 0 },
        { kind: SEL.OUT_INCLUDE, family: 6, address: '::', prefix: 0 },
      ]),
    );
  });

  it('fingerprints equal configs equally whatever the input order', () => {
    const reordered: MeshPod = {
      ...base,
      ips: { v4: ['198.18.0.1'], v6: ['2001:db8::1'] },
      traffic: { ...base.traffic, inbound: { include: [9090, 8080, 8080], exclude: [15020] } },
    };
    expect(canonical(podProgram(reordered, 1n))).toBe(canonical(podProgram(base, 2n)));
    expect(fingerprintOf(podProgram(reordered, 1n))).toBe(fingerprintOf(podProgram(base, 1n)));
    const changed = { ...base, proxy: { ...base.proxy, outboundPort: 15002 } };
    expect(fingerprintOf(podProgram(changed, 1n))).not.toBe(fingerprintOf(podProgram(base, 1n)));
  });

  it('names the pod, field and value on bad input', () => {
    const bad = { ...base, traffic: { ...base.traffic, inbound: { include: [70000], exclude: [] } } };
    expect(() => podProgram(bad, 1n)).toThrow(PodConfigError);
    expect(() => podProgram(bad, 1n)).toThrow('pod ns/p (uid u1): traffic.inbound.include[0]=70000');
    const badCidr = {
      ...base,
      traffic: { ...base.traffic, outbound: { ...base.traffic.outbound, excludeCidrs: [{ family: 4 as const, address: '::1', prefix: 8 }] } },
    };
    expect(() => podProgram(badCidr, 1n)).toThrow(/excludeCidrs\[0\].*does not match family 4/);
    expect(() => podProgram({ ...base, proxy: { ...base.proxy, uid: -1 } }, 1n)).toThrow(/proxy.uid=-1/);
  });
});
