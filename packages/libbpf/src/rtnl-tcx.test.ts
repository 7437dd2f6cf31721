import { execFileSync } from 'node:child_process';
import { BpfObject, attachTcxAsync, attachTcxAt, bpfObjectPath, detachLinkAsync, ifIndexIn, rtnlApply, tcxQuery, type BpfLink } from './index';
import { ipIn, makeNetns, removeNetns, runId } from './__fixtures__/env';

// One throwaway netns with a veth pair end (the other end in the same netns) for the tcx hooks.
describe('rtnlApply and positioned tcx links in a test netns', () => {
  const ns = runId('rt');
  const veth = runId('va');
  const peer = runId('vb');
  let nsPath: string;

  beforeAll(() => {
    nsPath = makeNetns(ns);
    ipIn(nsPath, ['link', 'add', veth, 'type', 'veth', 'peer', 'name', peer]);
    ipIn(nsPath, ['link', 'set', veth, 'up']);
  });
  afterAll(() => removeNetns(ns));

  const ip = (args: string[]): string => execFileSync('nsenter', [`--net=${nsPath}`, 'ip', ...args], { encoding: 'utf8' });

  test('fwmark rules and local default routes, v4 and v6: add, add again (EEXIST / replace), delete, delete again', () => {
    const ops = (op: 'add' | 'del') =>
      ([4, 6] as const).flatMap((family) => [
        { kind: 'route' as const, op, family, table: 1440 },
        { kind: 'rule' as const, op, family, table: 1440, priority: 32200, mark: 0x5a0, mask: 0xfff },
      ]);
    expect(rtnlApply(nsPath, ops('add')).map((r) => r.code)).toEqual(['OK', 'OK', 'OK', 'OK']);
    expect(ip(['-4', 'rule', 'show'])).toContain('32200:\tfrom all fwmark 0x5a0/0xfff lookup 1440');
    expect(ip(['-6', 'rule', 'show'])).toContain('32200:\tfrom all fwmark 0x5a0/0xfff lookup 1440');
    expect(ip(['-4', 'route', 'show', 'table', '1440'])).toMatch(/^local default dev lo/);
    expect(ip(['-6', 'route', 'show', 'table', '1440'])).toMatch(/^local default dev lo/);
    expect(rtnlApply(nsPath, ops('add')).map((r) => r.code)).toEqual(['OK', 'EEXIST', 'OK', 'EEXIST']);
    expect(rtnlApply(nsPath, ops('del')).map((r) => r.code)).toEqual(['OK', 'OK', 'OK', 'OK']);
    expect(ip(['-4', 'rule', 'show'])).not.toContain('1440');
    expect(ip(['-6', 'route', 'show', 'table', '1440'])).toBe('');
    expect(rtnlApply(nsPath, ops('del')).map((r) => r.code)).toEqual(['ESRCH', 'ENOENT', 'ESRCH', 'ENOENT']);
    expect(() => rtnlApply('/var/run/netns/shunt-missing', ops('add'))).toThrow(/ENOENT.*netns does not exist/);
  });

  test('a rule with iif (written and shown so, EEXIST again); a delete without iif removes it; a bad iif refused', () => {
    const rule = (op: 'add' | 'del', family: 4 | 6, iif?: string) => ({ kind: 'rule' as const, op, family, table: 1440, priority: 32200, mark: 0x5a0, mask: 0xfff, ...(iif ? { iif } : {}) });
    expect(rtnlApply(nsPath, [rule('add', 4, veth), rule('add', 6, veth)]).map((r) => r.code)).toEqual(['OK', 'OK']);
    expect(ip(['-4', 'rule', 'show'])).toContain(`32200:\tfrom all fwmark 0x5a0/0xfff iif ${veth} lookup 1440`);
    expect(ip(['-6', 'rule', 'show'])).toContain(`32200:\tfrom all fwmark 0x5a0/0xfff iif ${veth} lookup 1440`);
    expect(rtnlApply(nsPath, [rule('add', 4, veth)]).map((r) => r.code)).toEqual(['EEXIST']);
    expect(rtnlApply(nsPath, [rule('del', 4), rule('del', 6)]).map((r) => r.code)).toEqual(['OK', 'OK']);
    expect(ip(['-4', 'rule', 'show']) + ip(['-6', 'rule', 'show'])).not.toContain('1440');
    expect(() => rtnlApply(nsPath, [rule('add', 4, 'a-name-too-long-for-linux')])).toThrow(/bad iif/);
    expect(() => rtnlApply(nsPath, [{ kind: 'route', op: 'add', family: 4, table: 1440, iif: veth }])).toThrow(/bad iif/);
  });

  test('ifIndexIn: the index inside the netns; a missing interface named in the error', () => {
    const want = Number(/^(\d+):/.exec(ip(['-o', 'link', 'show', veth]))![1]);
    expect(ifIndexIn(nsPath, veth)).toBe(want);
    expect(ifIndexIn(nsPath, 'lo')).toBe(1);
    expect(() => ifIndexIn(nsPath, 'nosuchif0')).toThrow(/nosuchif0/);
  });

  test('tcx: first/last positions, the hook read back in run order, a stale revision refused', () => {
    // A program sits on a hook at most once (EEXIST): three loads give three programs.
    const objs = [0, 1, 2].map(() => BpfObject.open(bpfObjectPath('selftest/selftest.bpf.o')));
    const [p1, p2, p3] = objs.map((o) => o.program('selftest_tcx_ingress')) as [ReturnType<BpfObject['program']>, ReturnType<BpfObject['program']>, ReturnType<BpfObject['program']>];
    const links: BpfLink[] = [];
    try {
      const rev0 = tcxQuery(veth, 'ingress', { netns: nsPath }).revision;
      const a = attachTcxAt(p1, veth, 'ingress', { netns: nsPath, position: 'last', expectedRevision: rev0 });
      links.push(a);
      const b = attachTcxAt(p2, veth, 'ingress', { netns: nsPath, position: 'first' });
      links.push(b);
      const c = attachTcxAt(p3, veth, 'ingress', { netns: nsPath, position: 'last' });
      links.push(c);
      const hook = tcxQuery(veth, 'ingress', { netns: nsPath });
      expect(hook.linkIds).toEqual([b.info().id, a.info().id, c.info().id]);
      expect(hook.revision).toBe(rev0 + 3);
      const p4 = BpfObject.open(bpfObjectPath('selftest/selftest.bpf.o'));
      objs.push(p4);
      expect(() => attachTcxAt(p4.program('selftest_tcx_ingress'), veth, 'ingress', { netns: nsPath, position: 'last', expectedRevision: rev0 })).toThrow(/ESTALE.*changed since revision/);
      expect(tcxQuery(veth, 'egress', { netns: nsPath }).progIds).toEqual([]);
    } finally {
      for (const l of links) l.detach();
      for (const o of objs) o.close();
    }
    expect(tcxQuery(veth, 'ingress', { netns: nsPath }).progIds).toEqual([]);
  });

  test('async attach: two in flight at once land in order, errors are typed', async () => {
    const objs = [0, 1].map(() => BpfObject.open(bpfObjectPath('selftest/selftest.bpf.o')));
    const links: BpfLink[] = [];
    try {
      const [a, b] = await Promise.all(objs.map((o) => attachTcxAsync(o.program('selftest_tcx_egress'), veth, 'egress', { netns: nsPath, position: 'last' })));
      links.push(a!, b!);
      expect(new Set(tcxQuery(veth, 'egress', { netns: nsPath }).linkIds)).toEqual(new Set([a!.info().id, b!.info().id]));
      await expect(attachTcxAsync(objs[0]!.program('selftest_tcx_egress'), 'shuntnope0', 'egress', { netns: nsPath, position: 'last' })).rejects.toThrow(
        /attach tcx egress .*ENODEV.*no interface shuntnope0/,
      );
      await detachLinkAsync(links.pop()!);
      expect(tcxQuery(veth, 'egress', { netns: nsPath }).linkIds).toEqual([a!.info().id]);
    } finally {
      for (const l of links) l.detach();
      for (const o of objs) o.close();
    }
    expect(tcxQuery(veth, 'egress', { netns: nsPath }).progIds).toEqual([]);
  });
});
