import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_MESH_CAPTURE, captureOptionsOf, parseLoopbackCidr, podDnsServers, type MeshCaptureDefaults } from './capture-options';
import { loadConfig } from './config';
import type { KubeContainer, KubePod } from './kube/types';
import { pickPod } from './kube/normalise';
import { ISTIO_SIDECAR, interpretPod } from './profiles';
import type { MeshPod } from './types';

function injected(o: { annotations?: Record<string, string>; env?: KubeContainer['env']; spec?: Partial<NonNullable<KubePod['spec']>>; runAs?: { runAsUser?: number; runAsGroup?: number } } = {}): KubePod {
  return {
    metadata: { name: 'web-1', namespace: 'shop', uid: 'uid-1', annotations: { 'sidecar.istio.io/status': '{}', ...o.annotations } },
    spec: {
      containers: [{ name: 'app' }, { name: 'istio-proxy', args: ['proxy', 'sidecar'], env: o.env, securityContext: o.runAs }],
      ...o.spec,
    },
    status: { phase: 'Running', podIPs: [{ ip: '198.18.0.10' }] },
  };
}

function member(p: KubePod, mesh: MeshCaptureDefaults = DEFAULT_MESH_CAPTURE): MeshPod {
  const r = interpretPod(p, {}, ISTIO_SIDECAR, {}, mesh);
  if (!r.ok) throw r.error;
  return r.pod;
}

function rejected(p: KubePod, mesh: MeshCaptureDefaults = DEFAULT_MESH_CAPTURE): string {
  const r = interpretPod(p, {}, ISTIO_SIDECAR, {}, mesh);
  if (r.ok) throw new Error(`expected a rejection, got ${JSON.stringify(r.pod.capture)}`);
  return r.error.message;
}

const env = (vars: Record<string, string>): KubeContainer['env'] => Object.entries(vars).map(([name, value]) => ({ name, value }));

describe('capture options from annotations and the istio-proxy env', () => {
  it('a pod using none of them keeps the old shape (no capture field)', () => {
    const m = member(injected());
    expect(m.capture).toBeUndefined();
    expect(m.proxy.extraUids).toBeUndefined();
    expect(captureOptionsOf(m)).toEqual({
      excludeInterfaces: [],
      rerouteInterfaces: [],
      ownerGroups: { include: '*', exclude: [] },
      dropInvalid: false,
      hostLoopbackCidr: { family: 4, address: '127.0.0.1', prefix: 32 },
      dnsServers: undefined,
    });
  });

  it('excludeInterfaces, trimmed, order kept, duplicates dropped', () => {
    expect(member(injected({ annotations: { 'traffic.sidecar.istio.io/excludeInterfaces': 'net1, net2,net1' } })).capture).toEqual({ excludeInterfaces: ['net1', 'net2'] });
  });

  it('reroute-virtual-interfaces wins over the deprecated kubevirtInterfaces (both validated)', () => {
    expect(member(injected({ annotations: { 'istio.io/reroute-virtual-interfaces': 'net0ps2', 'traffic.sidecar.istio.io/kubevirtInterfaces': 'net1' } })).capture).toEqual({ rerouteInterfaces: ['net0ps2'] });
    expect(member(injected({ annotations: { 'traffic.sidecar.istio.io/kubevirtInterfaces': 'net1,net2' } })).capture).toEqual({ rerouteInterfaces: ['net1', 'net2'] });
    expect(rejected(injected({ annotations: { 'istio.io/reroute-virtual-interfaces': 'net0', 'traffic.sidecar.istio.io/kubevirtInterfaces': 'bad name' } }))).toMatch(
      /traffic\.sidecar\.istio\.io\/kubevirtInterfaces="bad name" rejected: interface name "bad name" contains invalid characters/,
    );
  });

  it.each([
    ['traffic.sidecar.istio.io/excludeInterfaces', 'eth0,', /empty interface name/],
    ['traffic.sidecar.istio.io/excludeInterfaces', 'averyveryverylongname0', /too long \(max 15 chars\)/],
    ['istio.io/reroute-virtual-interfaces', '0eth', /invalid characters/],
  ])('rejects %s=%j naming annotation and value', (key, value, why) => {
    const msg = rejected(injected({ annotations: { [key]: value } }));
    expect(msg).toContain('pod shop/web-1');
    expect(msg).toContain(`${key}=${JSON.stringify(value)}`);
    expect(msg).toMatch(why);
  });

  it('owner groups include / exclude (numeric), Istio precedence: exclude only with include "*"', () => {
    expect(member(injected({ env: env({ ISTIO_OUTBOUND_OWNER_GROUPS: '202,1000' }) })).capture).toEqual({ ownerGroups: { include: [202, 1000], exclude: [] } });
    expect(member(injected({ env: env({ ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE: '888,999' }) })).capture).toEqual({ ownerGroups: { include: '*', exclude: [888, 999] } });
    expect(member(injected({ env: env({ ISTIO_OUTBOUND_OWNER_GROUPS: '5', ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE: '6' }) })).capture).toEqual({ ownerGroups: { include: [5], exclude: [] } });
    // Set but empty: Istio's env.Lookup keeps "", which captures no group's outbound traffic.
    expect(member(injected({ env: env({ ISTIO_OUTBOUND_OWNER_GROUPS: '' }) })).capture).toEqual({ ownerGroups: { include: [], exclude: [] } });
  });

  it('owner groups: the pod env overrides the mesh-wide setting key by key', () => {
    const mesh = { ...DEFAULT_MESH_CAPTURE, ownerGroups: { include: '*' as const, exclude: [7] } };
    expect(member(injected(), mesh).capture).toEqual({ ownerGroups: { include: '*', exclude: [7] } });
    expect(member(injected({ env: env({ ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE: '8' }) }), mesh).capture).toEqual({ ownerGroups: { include: '*', exclude: [8] } });
  });

  it.each([
    ['ISTIO_OUTBOUND_OWNER_GROUPS', 'java,202', /"java" is not a numeric group .*group names are not supported/],
    ['ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE', '888,ftp', /"ftp" is not a numeric group/],
    ['ISTIO_OUTBOUND_OWNER_GROUPS', Array.from({ length: 65 }, (_, i) => String(i + 1)).join(','), /at most 64 groups/],
    ['INVALID_DROP', 'yes', /not a boolean/],
    ['ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR', '10.0.0.1/8', /IPv4 loopback/],
    ['ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR', '127.0.0.1/7', /mask in range \[8, 32\]/],
    ['ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR', '127.0.0.1', /failed to parse CIDR/],
    ['PROXY_UID', '1337,abc', /"abc" is not a numeric uid/],
    ['PROXY_GID', '-1', /"-1" is not a numeric gid/],
  ])('rejects istio-proxy env %s=%j naming env and value', (name, value, why) => {
    const msg = rejected(injected({ env: env({ [name]: value }) }));
    expect(msg).toContain('pod shop/web-1');
    expect(msg).toContain(`istio-proxy env ${name}=${JSON.stringify(value)}`);
    expect(msg).toMatch(why);
  });

  it('INVALID_DROP (pod env beats mesh) and the loopback range', () => {
    expect(member(injected({ env: env({ INVALID_DROP: 'true' }) })).capture).toEqual({ dropInvalid: true });
    expect(member(injected({ env: env({ INVALID_DROP: 'false' }) }), { ...DEFAULT_MESH_CAPTURE, dropInvalid: true }).capture).toBeUndefined();
    expect(member(injected(), { ...DEFAULT_MESH_CAPTURE, dropInvalid: true }).capture).toEqual({ dropInvalid: true });
    expect(member(injected({ env: env({ ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR: '127.0.0.1/8' }) })).capture).toEqual({ hostLoopbackCidr: { family: 4, address: '127.0.0.0', prefix: 8 } });
    expect(parseLoopbackCidr('127.0.0.1/32')).toEqual({ ok: true, value: { family: 4, address: '127.0.0.1', prefix: 32 } });
  });

  it('several proxy UIDs/GIDs: the securityContext id stays first, PROXY_UID/PROXY_GID add more', () => {
    const m = member(injected({ runAs: { runAsUser: 2000, runAsGroup: 3000 }, env: env({ PROXY_UID: '2000,4,3', PROXY_GID: '1,2,1' }) }));
    expect(m.proxy).toMatchObject({ uid: 2000, gid: 3000, extraUids: [3, 4], extraGids: [1, 2] });
    expect(m.capture).toBeUndefined();
  });

  it('env of other containers is not read', () => {
    const p = injected();
    p.spec!.containers![0]!.env = env({ INVALID_DROP: 'true', ISTIO_OUTBOUND_OWNER_GROUPS: 'x' });
    expect(member(p).capture).toBeUndefined();
  });

  it('non-members are never rejected for these (their settings are never applied)', () => {
    const p: KubePod = { ...injected({ annotations: { 'traffic.sidecar.istio.io/excludeInterfaces': 'bad name' } }) };
    p.metadata!.annotations = { 'traffic.sidecar.istio.io/excludeInterfaces': 'bad name' };
    p.spec!.containers = [{ name: 'app' }];
    const r = interpretPod(p, {}, ISTIO_SIDECAR, {});
    expect(r.ok && r.pod.membership).toBe('none');
  });
});

describe('per-pod DNS servers (what kubelet writes into resolv.conf)', () => {
  const dnsPod = (spec: Partial<NonNullable<KubePod['spec']>>): KubePod => injected({ env: env({ ISTIO_META_DNS_CAPTURE: 'true' }), spec });

  it('dnsPolicy None: the pod dnsConfig nameservers, canonical, split by family, at most 3', () => {
    const m = member(dnsPod({ dnsPolicy: 'None', dnsConfig: { nameservers: ['198.18.0.53', '2001:DB8::53', '198.18.0.54', '198.18.0.55'] } }));
    expect(m.capture?.dnsServers).toEqual({ v4: ['198.18.0.53', '198.18.0.54'], v6: ['2001:db8::53'] });
  });

  it('ClusterFirst (default): known only with the agent cluster DNS; dnsConfig appended', () => {
    expect(member(dnsPod({})).capture).toBeUndefined();
    const mesh = { ...DEFAULT_MESH_CAPTURE, clusterDnsServers: ['198.18.0.10'] };
    expect(member(dnsPod({ dnsConfig: { nameservers: ['198.18.0.99'] } }), mesh).capture?.dnsServers).toEqual({ v4: ['198.18.0.10', '198.18.0.99'], v6: [] });
    expect(member(dnsPod({ dnsPolicy: 'Default' }), mesh).capture).toBeUndefined();
  });

  it('only for pods with DNS capture on', () => {
    expect(member(injected({ spec: { dnsPolicy: 'None', dnsConfig: { nameservers: ['198.18.0.53'] } } })).capture).toBeUndefined();
  });

  it('bad servers and policies reject the pod naming the field', () => {
    expect(rejected(dnsPod({ dnsPolicy: 'None', dnsConfig: { nameservers: ['dns.example'] } }))).toMatch(/spec\.dnsConfig\.nameservers="dns\.example" rejected: "dns\.example" is not an IP address/);
    expect(rejected(dnsPod({ dnsPolicy: 'Sometimes' }))).toMatch(/spec\.dnsPolicy="Sometimes" rejected/);
    expect(podDnsServers('x', undefined, [])).toBeUndefined();
  });

  it('pickPod keeps dnsPolicy and dnsConfig.nameservers', () => {
    expect(pickPod({ spec: { dnsPolicy: 'None', dnsConfig: { nameservers: ['198.18.0.53'], searches: ['a'] } } }).spec).toEqual({ dnsPolicy: 'None', dnsConfig: { nameservers: ['198.18.0.53'] } });
  });
});

describe('mesh-wide capture settings in the agent config', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shunt-capcfg-'));
  const pods = join(dir, 'pods.yaml');
  writeFileSync(pods, '');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const load = (env: Record<string, string>, fileText?: string) => {
    const file = fileText === undefined ? undefined : join(dir, `c${Math.random()}.yaml`);
    if (file) writeFileSync(file, fileText!);
    return loadConfig({ flags: { nodeName: 'n1', podsFile: pods }, env, ...(file ? { file } : {}) }).config.meshCapture;
  };

  it('from Istio env names, SHUNT_ names, or the file', () => {
    expect(load({ ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE: '888', INVALID_DROP: 'true', ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR: '127.0.0.1/8' })).toEqual({
      ownerGroups: { include: '*', exclude: [888] },
      dropInvalid: true,
      hostLoopbackCidr: { family: 4, address: '127.0.0.0', prefix: 8 },
      clusterDnsServers: [],
    });
    expect(load({ SHUNT_OUTBOUND_OWNER_GROUPS: '5, 6' }).ownerGroups).toEqual({ include: [5, 6], exclude: [] });
    expect(load({ SHUNT_CLUSTER_DNS_SERVERS: '2001:DB8::a, 198.18.0.10,2001:db8::a' }).clusterDnsServers).toEqual(['2001:db8::a', '198.18.0.10']);
    expect(load({}, 'outboundOwnerGroups: [5, 6]\ndropInvalid: true\nclusterDnsServers: [198.18.0.10]\n')).toMatchObject({ ownerGroups: { include: [5, 6] }, dropInvalid: true, clusterDnsServers: ['198.18.0.10'] });
  });

  it.each([
    [{ SHUNT_OUTBOUND_OWNER_GROUPS: 'java' }, /config outboundOwnerGroups \(from env SHUNT_OUTBOUND_OWNER_GROUPS\): .*"java" is not a numeric group/],
    [{ ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE: 'ftp' }, /config outboundOwnerGroupsExclude \(from env ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE\)/],
    [{ SHUNT_DROP_INVALID: 'maybe' }, /config dropInvalid \(from env SHUNT_DROP_INVALID\): "maybe": not a boolean/],
    [{ SHUNT_HOST_LOOPBACK_CIDR: '127.0.0.1/40' }, /config hostLoopbackCidr .*127\.0\.0\.1\/40/],
    [{ SHUNT_CLUSTER_DNS_SERVERS: '198.18.0.10,nope' }, /config clusterDnsServers .*"nope" is not an IP address/],
  ])('bad %j is refused naming key and source', (env, why) => {
    expect(() => load(env as Record<string, string>)).toThrow(why);
  });
});
