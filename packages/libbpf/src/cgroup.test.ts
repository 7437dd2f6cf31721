import { BpfLink, BpfObject, bpfObjectPath } from './index';
import { makeCgroup, readCounters, removeCgroup, runId, runNode, type Hook } from './__fixtures__/env';

// Each cgroup program of the selftest object, and the counter slot it bumps.
const CGROUP_PROGRAMS: Array<[program: string, attachType: string, hook: Hook]> = [
  ['selftest_sockops', 'cgroup_sock_ops', 'sock_ops'],
  ['selftest_connect4', 'cgroup_inet4_connect', 'connect4'],
  ['selftest_connect6', 'cgroup_inet6_connect', 'connect6'],
  ['selftest_getsockopt', 'cgroup_getsockopt', 'getsockopt'],
  ['selftest_sendmsg4', 'cgroup_udp4_sendmsg', 'sendmsg4'],
  ['selftest_sendmsg6', 'cgroup_udp6_sendmsg', 'sendmsg6'],
  ['selftest_recvmsg4', 'cgroup_udp4_recvmsg', 'recvmsg4'],
  ['selftest_recvmsg6', 'cgroup_udp6_recvmsg', 'recvmsg6'],
  ['selftest_bind4', 'cgroup_inet4_bind', 'bind4'],
  ['selftest_bind6', 'cgroup_inet6_bind', 'bind6'],
];

describe('cgroup programs attached to a fresh child cgroup of the cgroup2 mount', () => {
  let obj: BpfObject;
  let cgroup: string;
  const links: BpfLink[] = [];

  beforeAll(() => {
    obj = BpfObject.open(bpfObjectPath('selftest/selftest.bpf.o'));
    cgroup = makeCgroup(runId('cg'));
  });

  afterAll(async () => {
    for (const l of links) l.close();
    obj?.close();
    if (cgroup) await removeCgroup(cgroup);
  });

  test('every hook runs for a process in the cgroup, and stops after detach', async () => {
    for (const [name, attachType] of CGROUP_PROGRAMS) {
      const link = obj.program(name).attachCgroup(cgroup);
      links.push(link);
      expect(link.info()).toMatchObject({ type: 'cgroup', attachType });
    }
    const counters = obj.map('hook_counters');
    const before = readCounters(counters);
    const result = await runNode('socket-workout.js', [], { cgroup });
    expect(result).toEqual({ tcp4: 'pong', tcp6: 'pong', udp4: 'ping', udp6: 'ping' });
    const after = readCounters(counters);
    for (const [, , hook] of CGROUP_PROGRAMS) {
      expect({ hook, moved: after[hook] > before[hook] }).toEqual({ hook, moved: true });
    }

    for (const l of links.splice(0)) l.detach();
    const detached = readCounters(counters);
    await runNode('socket-workout.js', [], { cgroup });
    const again = readCounters(counters);
    for (const [, , hook] of CGROUP_PROGRAMS) expect({ hook, count: again[hook] }).toEqual({ hook, count: detached[hook] });
  });

  test('a process outside the cgroup is not counted', async () => {
    const link = obj.program('selftest_connect4').attachCgroup(cgroup);
    links.push(link);
    const counters = obj.map('hook_counters');
    const before = readCounters(counters).connect4;
    await runNode('socket-workout.js', []);
    expect(readCounters(counters).connect4).toBe(before);
    link.detach();
    links.splice(links.indexOf(link), 1);
  });
});
