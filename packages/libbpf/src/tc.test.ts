import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { BpfLink, BpfObject, bpfObjectPath, probeTcx } from './index';
import { ipIn, makeNetns, readCounters, removeNetns, runId, runNode } from './__fixtures__/env';

// Two netns joined by a veth pair: programs go on the "pod" side (a), traffic comes from b.
describe('TC programs on a veth inside a test netns', () => {
  const nsA = runId('ta');
  const nsB = runId('tb');
  const vethA = runId('va');
  const vethB = runId('vb');
  let pathA: string;
  let pathB: string;
  let obj: BpfObject;
  const links: BpfLink[] = [];

  beforeAll(() => {
    pathA = makeNetns(nsA);
    pathB = makeNetns(nsB);
    execFileSync('ip', ['link', 'add', vethA, 'netns', nsA, 'type', 'veth', 'peer', 'name', vethB, 'netns', nsB]);
    ipIn(pathA, ['addr', 'add', '198.18.0.1/30', 'dev', vethA]);
    ipIn(pathB, ['addr', 'add', '198.18.0.2/30', 'dev', vethB]);
    ipIn(pathA, ['link', 'set', vethA, 'up']);
    ipIn(pathB, ['link', 'set', vethB, 'up']);
    obj = BpfObject.open(bpfObjectPath('selftest/selftest.bpf.o'));
  });

  afterAll(() => {
    for (const l of links) l.close();
    obj?.close();
    removeNetns(nsA); // takes the veth pair and any clsact qdisc with it
    removeNetns(nsB);
  });

  const sendTraffic = (): Promise<unknown> => runNode('udp-send.js', ['198.18.0.1', '9', '5'], { netns: pathB });

  test('tcx ingress and egress links: counters move, the caller stays in its netns, detach stops them', async () => {
    expect(probeTcx().available).toBe(true);
    const home = fs.readlinkSync('/proc/thread-self/ns/net');
    const ingress = obj.program('selftest_tcx_ingress').attachTc(vethA, 'ingress', { netns: pathA, mode: 'tcx' });
    links.push(ingress);
    const egress = obj.program('selftest_tcx_egress').attachTc(vethA, 'egress', { netns: pathA });
    links.push(egress);
    expect(fs.readlinkSync('/proc/thread-self/ns/net')).toBe(home);
    expect(ingress.kind).toBe('link');
    expect(ingress.info()).toMatchObject({ type: 'tcx', attachType: 'tcx_ingress' });
    expect(egress.info()).toMatchObject({ type: 'tcx', attachType: 'tcx_egress' });

    const counters = obj.map('hook_counters');
    const before = readCounters(counters);
    await sendTraffic();
    const after = readCounters(counters);
    expect(after.tcx_ingress - before.tcx_ingress).toBeGreaterThanOrEqual(5n);
    // each datagram to a closed port earns an ICMP port unreachable going back out
    expect(after.tcx_egress).toBeGreaterThan(before.tcx_egress);

    ingress.detach();
    egress.detach();
    links.splice(0);
    await sendTraffic();
    const detached = readCounters(counters);
    expect(detached.tcx_ingress).toBe(after.tcx_ingress);
    expect(detached.tcx_egress).toBe(after.tcx_egress);
  });

  test('legacy clsact + cls_bpf fallback: filter installed, counter moves, detach removes the filter', async () => {
    const link = obj.program('selftest_tc_legacy').attachTc(vethA, 'ingress', { netns: pathA, mode: 'legacy' });
    links.push(link);
    expect(link.kind).toBe('tc-legacy');
    const filters = execFileSync('nsenter', [`--net=${pathA}`, 'tc', 'filter', 'show', 'dev', vethA, 'ingress'], {
      encoding: 'utf8',
    });
    expect(filters).toMatch(/selftest_tc_leg.*direct-action/) // kernel program names stop at 15 chars;
    expect(() => link.pin('/sys/fs/bpf/shunt-never')).toThrow(/EOPNOTSUPP.*cannot be pinned/);

    const counters = obj.map('hook_counters');
    const before = readCounters(counters).tc_legacy;
    await sendTraffic();
    expect(readCounters(counters).tc_legacy - before).toBeGreaterThanOrEqual(5n);

    link.detach();
    links.splice(0);
    const after = execFileSync('nsenter', [`--net=${pathA}`, 'tc', 'filter', 'show', 'dev', vethA, 'ingress'], {
      encoding: 'utf8',
    });
    expect(after).not.toMatch(/selftest_tc_leg/);
  });

  test('a missing interface or netns is a typed error naming it', () => {
    const prog = obj.program('selftest_tcx_ingress');
    expect(() => prog.attachTc('shuntnope0', 'ingress', { netns: pathA })).toThrow(
      new RegExp(`find interface shuntnope0: ENODEV .*in netns ${pathA}`),
    );
    expect(() => prog.attachTc(vethA, 'ingress', { netns: '/var/run/netns/shunt-missing' })).toThrow(
      /attach tc program selftest_tcx_ingress: ENOENT.*netns \/var\/run\/netns\/shunt-missing does not exist/,
    );
    expect(() => obj.program('selftest_connect4').attachTc(vethA, 'ingress', { netns: pathA })).toThrow(
      /program type is cgroup_sock_addr, not sched_cls/,
    );
  });
});
