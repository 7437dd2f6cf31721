import { netnsCookie, withNetns, originalDst, BpfError, probeProgType, probeMapType, probeHelper, probeTcx, probeAttachType, ipv6, libbpfVersion } from './index';
import { makeNetns, removeNetns, runId, runNode, ipIn } from './__fixtures__/env';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';

describe('netns helpers', () => {
  const name = runId('n');
  let nsPath: string;
  beforeAll(() => {
    nsPath = makeNetns(name);
  });
  afterAll(() => removeNetns(name));

  test('netnsCookie differs between namespaces and is stable for one', () => {
    const own = netnsCookie('/proc/self/ns/net');
    const other = netnsCookie(nsPath);
    expect(own).toBeGreaterThan(0n);
    expect(other).not.toBe(own);
    expect(netnsCookie(nsPath)).toBe(other);
  });

  test('withNetns switches this thread and always switches back, also on error', () => {
    const home = fs.readlinkSync('/proc/thread-self/ns/net');
    const inside = withNetns(nsPath, () => fs.readlinkSync('/proc/thread-self/ns/net'));
    expect(inside).not.toBe(home);
    expect(fs.readlinkSync('/proc/thread-self/ns/net')).toBe(home);
    expect(() =>
      withNetns(nsPath, () => {
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(fs.readlinkSync('/proc/thread-self/ns/net')).toBe(home);
  });

  test('a missing netns is a typed error naming the path', () => {
    expect(() => netnsCookie('/var/run/netns/shunt-does-not-exist')).toThrow(
      /netns cookie \/var\/run\/netns\/shunt-does-not-exist: ENOENT/,
    );
  });
});

describe('originalDst', () => {
  const name = runId('od');
  let nsPath: string;
  beforeAll(() => {
    nsPath = makeNetns(name);
    ipIn(nsPath, ['addr', 'add', '198.18.0.1/32', 'dev', 'lo']);
    ipIn(nsPath, ['addr', 'add', '2001:db8::1/128', 'dev', 'lo', 'nodad']);
    for (const [tool, addr] of [
      ['iptables', '198.18.0.1'],
      ['ip6tables', '2001:db8::1'],
    ] as const)
      execFileSync('nsenter', [`--net=${nsPath}`, tool, '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-d', addr, '--dport', '80', '-j', 'REDIRECT', '--to-ports', '15001']);
  });
  afterAll(() => removeNetns(name)); // the rules live and die with the netns

  test('reads the pre-REDIRECT destination for IPv4 and IPv6', async () => {
    const r = await runNode('original-dst.js', ['4,198.18.0.1,80', '6,2001:db8::1,80', '4,127.0.0.1,15001'], { netns: nsPath });
    expect(r).toEqual([
      { ok: { address: '198.18.0.1', port: 80 } },
      { ok: { address: '2001:db8::1', port: 80 } },
      // tracked but not NATed: conntrack reports the destination as it was
      { ok: { address: '127.0.0.1', port: 15001 } },
    ]);
  });

  test('a connection conntrack never saw (netns without nat rules) is ENOENT', async () => {
    const plain = runId('od');
    const plainPath = makeNetns(plain);
    try {
      const r = await runNode('original-dst.js', ['4,127.0.0.1,15001'], { netns: plainPath });
      expect(r).toEqual([{ error: { code: 'ENOENT', op: 'getsockopt(SOL_IP, SO_ORIGINAL_DST)', name: 'BpfError' } }]);
    } finally {
      removeNetns(plain);
    }
  });

  test('a socket that was never redirected has no original destination', () => {
    try {
      originalDst(0, 4);
      throw new Error('expected a BpfError');
    } catch (err) {
      expect(err).toBeInstanceOf(BpfError);
      // fd 0 is not a socket here (jest's stdin); either way it must name the fd
      expect((err as BpfError).target).toBe('socket fd 0');
    }
    expect(() => originalDst(3, 5 as 4)).toThrow(/family must be 4 or 6/);
  });
});

describe('feature probes', () => {
  test('the kernel features the backends need are present, with evidence', () => {
    for (const t of ['sock_ops', 'cgroup_sock_addr', 'sk_msg', 'sched_cls', 'cgroup_sockopt'])
      expect(probeProgType(t)).toMatchObject({ available: true, evidence: expect.stringContaining(t) });
    for (const t of ['hash', 'lru_hash', 'percpu_array', 'lpm_trie', 'sockhash'])
      expect(probeMapType(t).available).toBe(true);
    expect(probeHelper('sk_msg', 'msg_redirect_hash')).toMatchObject({ available: true });
    expect(probeHelper('sock_ops', 'bpf_sock_hash_update').available).toBe(true);
    expect(probeAttachType('cgroup_sock_addr', 'cgroup_inet6_connect').available).toBe(true);
    expect(probeTcx().evidence).toMatch(/tcx_ingress/);
    expect(libbpfVersion()).toMatch(/^1\.\d+$/);
  });

  test('unknown names are reported as unavailable, not thrown', () => {
    expect(probeProgType('no_such_type')).toMatchObject({ available: false, evidence: expect.stringContaining("no program type 'no_such_type'") });
    expect(probeHelper('sk_msg', 'no_such_helper')).toMatchObject({ available: false, evidence: expect.stringContaining('BPF_FUNC_no_such_helper') });
    // a helper that exists but is not allowed for the program type
    expect(probeHelper('cgroup_sock_addr', 'msg_redirect_hash').available).toBe(false);
    // connect hooks are not a thing for sock_ops programs; the kernel says so at load
    expect(probeAttachType('cgroup_sock_addr', 'sk_msg_verdict').available).toBe(false);
  });
});

describe('ipv6 codec', () => {
  test('round trips compressed and embedded-v4 forms', () => {
    expect(ipv6.decode(ipv6.encode('2001:db8::1'))).toBe('2001:db8::1');
    expect(ipv6.encode('::ffff:198.18.0.1').subarray(10)).toEqual(Buffer.from([0xff, 0xff, 198, 18, 0, 1]));
    expect(ipv6.decode(ipv6.encode('2001:db8:0:1:0:0:0:5'))).toBe('2001:db8:0:1::5');
  });
});
