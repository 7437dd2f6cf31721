import { PodRejectedError } from './errors';
import type { KubePod } from './kube/types';
import { ISTIO_AMBIENT, ISTIO_SIDECAR, interpretPod, wantsRedirect } from './profiles';
import type { MeshPod } from './types';

type PodOpts = {
  name?: string;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
  containers?: KubePod['spec'] extends infer S ? (S extends { containers?: infer C } ? C : never) : never;
  initContainers?: NonNullable<KubePod['spec']>['initContainers'];
  hostNetwork?: boolean;
  phase?: string;
  ips?: string[];
};

function pod(o: PodOpts = {}): KubePod {
  return {
    metadata: { name: o.name ?? 'web-1', namespace: 'shop', uid: 'uid-1', annotations: o.annotations ?? {}, labels: o.labels ?? {} },
    spec: { nodeName: 'n1', hostNetwork: o.hostNetwork, containers: o.containers ?? [{ name: 'app' }], initContainers: o.initContainers },
    status: { phase: o.phase ?? 'Running', podIPs: (o.ips ?? ['198.18.0.10']).map((ip) => ({ ip })) },
  };
}

const injected = (o: PodOpts = {}): KubePod =>
  pod({ ...o, containers: o.containers ?? [{ name: 'app' }, { name: 'istio-proxy', args: ['proxy', 'sidecar'] }], annotations: { 'sidecar.istio.io/status': '{}', ...o.annotations } });

function sidecar(p: KubePod, ns: Record<string, string> = {}): MeshPod {
  const r = interpretPod(p, ns, ISTIO_SIDECAR, {});
  if (!r.ok) throw r.error;
  return r.pod;
}

function rejection(p: KubePod, profile = ISTIO_SIDECAR): PodRejectedError {
  const r = interpretPod(p, {}, profile, {});
  if (r.ok) throw new Error(`expected a rejection, got ${JSON.stringify(r.pod.traffic)}`);
  return r.error;
}

describe('istio-sidecar membership', () => {
  it.each<[string, KubePod, string]>([
    ['istio-proxy container', pod({ containers: [{ name: 'app' }, { name: 'istio-proxy' }] }), 'sidecar'],
    ['istio-proxy as a native sidecar (init container)', pod({ initContainers: [{ name: 'istio-proxy', restartPolicy: 'Always' }] }), 'sidecar'],
    ['sidecar.istio.io/status annotation', pod({ annotations: { 'sidecar.istio.io/status': '{"containers":["istio-proxy"]}' } }), 'sidecar'],
    ['plain pod', pod(), 'none'],
    ['inject=false annotation', injected({ annotations: { 'sidecar.istio.io/inject': 'false' } }), 'none'],
    ['inject=false label', injected({ labels: { 'sidecar.istio.io/inject': 'false' } }), 'none'],
    ['inject label "0" (Go ParseBool)', injected({ labels: { 'sidecar.istio.io/inject': '0' } }), 'none'],
    ['label true wins over annotation false', injected({ labels: { 'sidecar.istio.io/inject': 'true' }, annotations: { 'sidecar.istio.io/inject': 'false' } }), 'sidecar'],
    ['inject "no" is not a Go bool, so ignored as in Istio', injected({ annotations: { 'sidecar.istio.io/inject': 'no' } }), 'sidecar'],
    ['istio-init present (pod programs its own iptables)', injected({ initContainers: [{ name: 'istio-init' }] }), 'none'],
    ['DISABLE_ENVOY=true on istio-proxy', injected({ containers: [{ name: 'istio-proxy', env: [{ name: 'DISABLE_ENVOY', value: 'true' }] }] }), 'none'],
    ['gateway (proxy router)', injected({ containers: [{ name: 'istio-proxy', args: ['proxy', 'router'] }] }), 'none'],
    ['hostNetwork pod', injected({ hostNetwork: true }), 'none'],
    ['finished pod', injected({ phase: 'Succeeded' }), 'none'],
    ['ambient label does not make a sidecar member', pod({ labels: { 'istio.io/dataplane-mode': 'ambient' } }), 'none'],
  ])('%s → %s', (_what, p, membership) => {
    const m = sidecar(p);
    expect(m.membership).toBe(membership);
    expect(m.membershipReason).toEqual(expect.any(String));
    expect(wantsRedirect(m)).toBe(membership !== 'none');
  });
});

describe('istio-ambient membership', () => {
  const ambient = (p: KubePod, ns: Record<string, string> = {}) => {
    const r = interpretPod(p, ns, ISTIO_AMBIENT, {});
    if (!r.ok) throw r.error;
    return r.pod;
  };
  it.each<[string, KubePod, Record<string, string>, string]>([
    ['pod label ambient', pod({ labels: { 'istio.io/dataplane-mode': 'ambient' } }), {}, 'ambient'],
    ['namespace label ambient', pod(), { 'istio.io/dataplane-mode': 'ambient' }, 'ambient'],
    ['namespace ambient, pod opts out with none', pod({ labels: { 'istio.io/dataplane-mode': 'none' } }), { 'istio.io/dataplane-mode': 'ambient' }, 'none'],
    ['no label anywhere', pod(), {}, 'none'],
    ['namespace label other value', pod(), { 'istio.io/dataplane-mode': 'sidecar' }, 'none'],
    ['pod with a sidecar is never ambient', injected(), { 'istio.io/dataplane-mode': 'ambient' }, 'none'],
    ['hostNetwork pod in an ambient namespace', pod({ hostNetwork: true }), { 'istio.io/dataplane-mode': 'ambient' }, 'none'],
    ['failed pod', pod({ phase: 'Failed' }), { 'istio.io/dataplane-mode': 'ambient' }, 'none'],
  ])('%s → %s', (_what, p, ns, membership) => expect(ambient(p, ns).membership).toBe(membership));

  test('the service account rides along for ZDS WorkloadInfo', () => {
    const p = pod({ labels: { 'istio.io/dataplane-mode': 'ambient' } });
    expect(ambient({ ...p, spec: { ...p.spec, serviceAccountName: 'reviews' } }).serviceAccount).toBe('reviews');
    expect(ambient(p).serviceAccount).toBeUndefined();
  });

  it('ztunnel ports and profile data', () => {
    const m = ambient(pod(), { 'istio.io/dataplane-mode': 'ambient' });
    expect(m.proxy).toEqual({ uid: 1337, gid: 1337, outboundPort: 15001, inboundPort: 15006, tunnelPort: 15008 });
    expect(m.traffic.inbound).toEqual({ include: '*', exclude: [15008] });
    expect(m.traffic.outbound).toEqual({ includePorts: [], excludePorts: [], includeCidrs: '*', excludeCidrs: [] });
  });

  it('ignores sidecar traffic annotations (ztunnel does) and honours bypass-inbound-capture and dns-capture', () => {
    const m = ambient(
      pod({
        annotations: {
          'traffic.sidecar.istio.io/excludeOutboundIPRanges': 'not-a-cidr',
          'ambient.istio.io/bypass-inbound-capture': 'true',
          'ambient.istio.io/dns-capture': 'true',
        },
      }),
      { 'istio.io/dataplane-mode': 'ambient' },
    );
    expect(m.membership).toBe('ambient');
    expect(m.traffic.inbound.include).toEqual([]);
    expect(m.proxy.dnsPort).toBe(15053);
  });

  it('reads the ambient annotations as Go booleans and rejects a member whose value is not one, naming it', () => {
    const ns = { 'istio.io/dataplane-mode': 'ambient' };
    const on = ambient(pod({ annotations: { 'ambient.istio.io/bypass-inbound-capture': 'True', 'ambient.istio.io/dns-capture': '1' } }), ns);
    expect(on.traffic.inbound.include).toEqual([]);
    expect(on.proxy.dnsPort).toBe(15053);
    const off = ambient(pod({ annotations: { 'ambient.istio.io/bypass-inbound-capture': 'false', 'ambient.istio.io/dns-capture': 'F' } }), ns);
    expect(off.traffic.inbound.include).toBe('*');
    expect(off.proxy.dnsPort).toBeUndefined();
    const bad = interpretPod(pod({ annotations: { 'ambient.istio.io/dns-capture': 'yes please' } }), ns, ISTIO_AMBIENT);
    expect(bad.ok).toBe(false);
    expect(!bad.ok && bad.error.message).toMatch(/^pod shop\/web-1: annotation ambient\.istio\.io\/dns-capture="yes please" rejected: want a boolean/);
    // Not a member: its annotations are never applied, so they cannot be wrong.
    expect(interpretPod(pod({ annotations: { 'ambient.istio.io/dns-capture': 'yes please' } }), {}, ISTIO_AMBIENT).ok).toBe(true);
  });

  it('backend order: tc, then iptables (istio-cni in-pod rules)', () => {
    expect(ISTIO_AMBIENT.backendOrder).toEqual(['tc', 'iptables']);
  });
});

describe('istio-sidecar defaults', () => {
  it('member pod with no traffic annotations', () => {
    const m = sidecar(injected({ ips: ['198.18.0.10', '2001:DB8::a'] }));
    expect(m).toMatchObject({
      uid: 'uid-1',
      namespace: 'shop',
      name: 'web-1',
      profile: 'istio-sidecar',
      membership: 'sidecar',
      hostNetwork: false,
      ips: { v4: ['198.18.0.10'], v6: ['2001:db8::a'] },
      interceptionMode: 'REDIRECT',
      proxy: { uid: 1337, gid: 1337, outboundPort: 15001, inboundPort: 15006 },
      traffic: {
        inbound: { include: '*', exclude: [15008, 15020, 15021, 15090] },
        outbound: { includePorts: [], excludePorts: [], includeCidrs: '*', excludeCidrs: [] },
      },
    });
  });

  it('podIP is used when podIPs is absent', () => {
    const p = injected();
    p.status = { podIP: '198.18.0.99' };
    expect(sidecar(p).ips).toEqual({ v4: ['198.18.0.99'], v6: [] });
  });

  it('proxy identity from istio-proxy securityContext, 0 meaning default (TPROXY runs as root)', () => {
    expect(sidecar(injected({ containers: [{ name: 'istio-proxy', securityContext: { runAsUser: 2000, runAsGroup: 3000 } }] })).proxy).toMatchObject({ uid: 2000, gid: 3000 });
    expect(sidecar(injected({ containers: [{ name: 'istio-proxy', securityContext: { runAsUser: 0, runAsGroup: 1337 } }] })).proxy).toMatchObject({ uid: 1337, gid: 1337 });
  });

  it('DNS capture from ISTIO_META_DNS_CAPTURE on istio-proxy', () => {
    const m = sidecar(injected({ containers: [{ name: 'istio-proxy', env: [{ name: 'ISTIO_META_DNS_CAPTURE', value: 'true' }] }] }));
    expect(m.proxy.dnsPort).toBe(15053);
    expect(sidecar(injected()).proxy.dnsPort).toBeUndefined();
  });

  it('extras are carried over and validated', () => {
    const r = interpretPod(injected(), {}, ISTIO_SIDECAR, { netnsPath: '/var/run/netns/x', cgroupPath: '/sys/fs/cgroup/p', hostVeth: 'veth1' });
    expect(r.ok && r.pod).toMatchObject({ netnsPath: '/var/run/netns/x', cgroupPath: '/sys/fs/cgroup/p', hostVeth: 'veth1' });
    const bad = interpretPod(injected(), {}, ISTIO_SIDECAR, { netnsPath: 'relative/path' });
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.error.message).toMatch(/shop\/web-1.*shunt.netnsPath.*relative\/path.*absolute/);
  });
});

describe('istio-sidecar annotations', () => {
  const A = 'traffic.sidecar.istio.io/';
  const withAnn = (key: string, value: string) => sidecar(injected({ annotations: { [key]: value } }));

  it('interceptionMode REDIRECT / TPROXY / NONE', () => {
    expect(withAnn('sidecar.istio.io/interceptionMode', 'REDIRECT').interceptionMode).toBe('REDIRECT');
    expect(withAnn('sidecar.istio.io/interceptionMode', 'TPROXY').interceptionMode).toBe('TPROXY');
    const none = withAnn('sidecar.istio.io/interceptionMode', 'NONE');
    expect(none.interceptionMode).toBe('NONE');
    expect(wantsRedirect(none)).toBe(false);
  });

  it('includeInboundPorts: "*", list, empty (= capture nothing)', () => {
    expect(withAnn(A + 'includeInboundPorts', '*').traffic.inbound.include).toBe('*');
    expect(withAnn(A + 'includeInboundPorts', '9090, 8080,8080').traffic.inbound.include).toEqual([8080, 9090]);
    expect(withAnn(A + 'includeInboundPorts', '').traffic.inbound.include).toEqual([]);
    expect(withAnn(A + 'includeInboundPorts', '  ').traffic.inbound.include).toEqual([]);
  });

  it('excludeInboundPorts adds to the never-capture ports; status port is excluded too', () => {
    expect(withAnn(A + 'excludeInboundPorts', '9000,15020').traffic.inbound.exclude).toEqual([9000, 15008, 15020, 15021, 15090]);
    expect(withAnn('status.sidecar.istio.io/port', '15999').traffic.inbound.exclude).toEqual([15008, 15020, 15021, 15090, 15999]);
  });

  it('include/excludeOutboundPorts', () => {
    expect(withAnn(A + 'includeOutboundPorts', '5432,6379').traffic.outbound.includePorts).toEqual([5432, 6379]);
    expect(withAnn(A + 'excludeOutboundPorts', '3306').traffic.outbound.excludePorts).toEqual([3306]);
  });

  it('includeOutboundIPRanges: "*", v4 and v6 list, empty (= no outbound capture)', () => {
    expect(withAnn(A + 'includeOutboundIPRanges', '*').traffic.outbound.includeCidrs).toBe('*');
    expect(withAnn(A + 'includeOutboundIPRanges', '10.96.0.0/12,2001:db8::/32,10.0.0.1/8').traffic.outbound.includeCidrs).toEqual([
      { family: 4, address: '10.0.0.0', prefix: 8 },
      { family: 4, address: '10.96.0.0', prefix: 12 },
      { family: 6, address: '2001:db8::', prefix: 32 },
    ]);
    expect(withAnn(A + 'includeOutboundIPRanges', '').traffic.outbound.includeCidrs).toEqual([]);
  });

  it('excludeOutboundIPRanges: v4 and v6', () => {
    expect(withAnn(A + 'excludeOutboundIPRanges', '169.254.169.254/32,fd00::/8').traffic.outbound.excludeCidrs).toEqual([
      { family: 4, address: '169.254.169.254', prefix: 32 },
      { family: 6, address: 'fd00::', prefix: 8 },
    ]);
  });

  it.each<[string, string, RegExp]>([
    [A + 'includeInboundPorts', '70000', /out of range/],
    [A + 'includeInboundPorts', 'abc', /invalid syntax/],
    [A + 'includeInboundPorts', '80,,90', /failed parsing port/],
    [A + 'includeInboundPorts', ' *', /invalid syntax/],
    [A + 'includeInboundPorts', '-1', /invalid syntax/],
    [A + 'excludeInboundPorts', '*', /wildcard/],
    [A + 'excludeInboundPorts', '65536', /out of range/],
    [A + 'excludeInboundPorts', '80;90', /invalid syntax/],
    [A + 'includeOutboundPorts', '*', /wildcard/],
    [A + 'includeOutboundPorts', 'http', /invalid syntax/],
    [A + 'excludeOutboundPorts', '*', /wildcard/],
    [A + 'excludeOutboundPorts', '99999', /out of range/],
    [A + 'includeOutboundIPRanges', '10.0.0.0/33', /out of range/],
    [A + 'includeOutboundIPRanges', 'abc', /no '\/'/],
    [A + 'includeOutboundIPRanges', '10.0.0.1', /no '\/'/],
    [A + 'includeOutboundIPRanges', '10.0.0.0/8, 10.1.0.0/16', /bad address/],
    [A + 'includeOutboundIPRanges', '10.0.0.0/8,', /no '\/'/],
    [A + 'includeOutboundIPRanges', '2001:db8::/129', /out of range/],
    [A + 'includeOutboundIPRanges', '* ', /no '\/'/],
    [A + 'excludeOutboundIPRanges', '*', /wildcard/],
    [A + 'excludeOutboundIPRanges', '10.0.0.0/33', /out of range/],
    [A + 'excludeOutboundIPRanges', '300.0.0.0/8', />255/],
    [A + 'excludeOutboundIPRanges', '10.0.0.0/08', /bad bits/],
    ['sidecar.istio.io/interceptionMode', 'redirect', /case-sensitive/],
    ['sidecar.istio.io/interceptionMode', 'TPROXY ', /interceptionMode invalid/],
    ['sidecar.istio.io/interceptionMode', '', /interceptionMode invalid/],
    ['status.sidecar.istio.io/port', 'x', /failed parsing port/],
  ])('%s=%j rejects the pod, naming pod, annotation and value', (key, value, why) => {
    const err = rejection(injected({ annotations: { [key]: value } }));
    expect(err).toBeInstanceOf(PodRejectedError);
    expect(err.code).toBe('POD_REJECTED');
    expect(err.pod).toBe('shop/web-1');
    expect(err.field).toBe(key);
    expect(err.value).toBe(value);
    expect(err.message).toContain('shop/web-1');
    expect(err.message).toContain(key);
    expect(err.message).toContain(JSON.stringify(value));
    expect(err.detail).toMatch(why);
  });

  it('a bad annotation on a non-member is not an error (it is never applied)', () => {
    const m = sidecar(pod({ annotations: { [A + 'includeInboundPorts']: '70000' } }));
    expect(m.membership).toBe('none');
  });

  it('bad pod IP and missing name reject with the field named', () => {
    expect(rejection(injected({ ips: ['198.18.0.300'] })).field).toBe('status.podIPs');
    const p = injected();
    delete p.metadata!.name;
    expect(rejection(p).field).toBe('metadata.name');
  });

  it('a rejected pod does not affect the next one', () => {
    const bad = interpretPod(injected({ annotations: { [A + 'excludeOutboundIPRanges']: '*' } }), {}, ISTIO_SIDECAR);
    const good = interpretPod(injected({ name: 'web-2' }), {}, ISTIO_SIDECAR);
    expect(bad.ok).toBe(false);
    expect(good.ok).toBe(true);
  });
});
