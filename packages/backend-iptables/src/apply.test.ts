// Applies every golden rule set in throwaway netns with the real iptables-legacy and -nft, and
// checks what the kernel then reports: exactly the rendered lines, no change on re-apply, foreign
// rules untouched, atomic replacement, rollback on a refused restore, drift seen and repaired,
// nothing left after cleanup.

import type { MeshPod } from '@shunt/core';
import { Netlink, runCommand } from '@shunt/netlink';
import { IptablesBackend } from './backend';
import { RestoreError } from './errors';
import type { IptablesBackendOptions, IptablesVariant } from './options';
import { canonicalTable, FAMILIES, familyRules, TABLES } from './plan';
import { podFamilies } from './render';
import { parseSave } from './save';
import { GOLDEN_CASES, sidecarPod, withTraffic } from './__fixtures__/pods';
import { ambientPod, bypassInbound, withDns } from './__fixtures__/ambient-pods';
import { NetnsIptables } from './netns-iptables';
import { disposeStateDirs, Netnses, nodeContext, tempStateDir } from './__fixtures__/node';

const VARIANTS: IptablesVariant[] = ['legacy', 'nft'];

function bin(variant: IptablesVariant, fam: 4 | 6, what: '' | '-save' | '-restore' = ''): string {
  return `${fam === 4 ? 'iptables' : 'ip6tables'}-${variant}${what}`;
}

/** The whole dump of a family without counters and comments: the before/after comparison. */
async function fullSave(ns: string, variant: IptablesVariant, fam: 4 | 6): Promise<string> {
  const out = await runCommand([bin(variant, fam, '-save')], { netns: ns });
  // One block per table; a table holding only empty built-in chains is the same as no table
  // (a rollback may leave the kernel having instantiated it).
  const tables = out.split(/^(?=\*)/m).map((block) =>
    block
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => (l.startsWith(':') ? l.replace(/\[\d+:\d+\]$/, '') : l)),
  );
  const blank = (lines: string[]) => lines.every((l) => l.startsWith('*') || l === 'COMMIT' || /^:[A-Z]+ ACCEPT $/.test(l));
  return tables.filter((t) => t.length > 0 && !blank(t)).map((t) => t.join('\n')).join('\n');
}

async function ipt(ns: string, variant: IptablesVariant, fam: 4 | 6, args: string[]): Promise<void> {
  await runCommand([bin(variant, fam), ...args], { netns: ns });
}

async function ipRules(ns: string): Promise<string> {
  const nl = Netlink.at(ns);
  const rows = [...(await nl.rules({ family: 4 })), ...(await nl.rules({ family: 6 }))];
  return JSON.stringify(rows.map((r) => ({ f: r.family, p: r.priority, t: r.table, m: r.fwmark })));
}

function podUid(name: string): Partial<MeshPod> {
  return { uid: `uid-${name}`, name };
}

describe.each(VARIANTS)('iptables-%s', (variant) => {
  const netnses = new Netnses();
  afterAll(async () => {
    await netnses.disposeAll();
    disposeStateDirs();
  });

  async function backendFor(opts: IptablesBackendOptions = {}): Promise<IptablesBackend> {
    const b = new IptablesBackend({ variant, stateDir: tempStateDir(), ...opts });
    await b.start(await nodeContext());
    return b;
  }

  async function expectInstalled(ns: string, backend: IptablesBackend, pod: MeshPod): Promise<void> {
    const plan = backend.render(pod);
    for (const fam of FAMILIES) {
      const saved = parseSave(await fullSave(ns, variant, fam));
      for (const table of TABLES) {
        const want = podFamilies(pod).includes(fam) ? familyRules(plan, fam)[table] : undefined;
        expect({ fam, table, ours: canonicalTable(saved[table]?.ours) }).toEqual({ fam, table, ours: canonicalTable(want) });
      }
    }
    const seen = (await backend.observe()).pods.find((p) => p.uid === pod.uid);
    expect(seen?.fingerprint).toBe(backend.fingerprint(pod));
  }

  test.each(GOLDEN_CASES.map((c) => [c.name, c] as const))('golden case %s: installed as rendered, re-apply no-op, unenroll clean', async (_n, c) => {
    const ns = await netnses.create('golden');
    const backend = await backendFor(c.opts);
    const pod: MeshPod = { ...c.pod, netnsPath: ns };
    const empty = FAMILIES.every((f) => Object.keys(familyRules(backend.render(pod), f)).length === 0);
    const rulesBefore = await ipRules(ns);

    const first = await backend.enrollWithResult(pod);
    expect(first.changed).toBe(!empty);
    if (!empty) await expectInstalled(ns, backend, pod);

    const before = [await fullSave(ns, variant, 4), await fullSave(ns, variant, 6), await ipRules(ns)];
    const again = await backend.enrollWithResult(pod);
    expect(again).toEqual({ changed: false, transactions: 0 });
    expect([await fullSave(ns, variant, 4), await fullSave(ns, variant, 6), await ipRules(ns)]).toEqual(before);

    if (pod.interceptionMode === 'TPROXY' && !empty) {
      const mark = c.opts?.tproxyMark ?? 1337;
      expect(JSON.parse(before[2]!)).toContainEqual(expect.objectContaining({ f: 4, m: mark }));
    }
    if (pod.membership === 'ambient' && !empty) {
      // istio-cni's connmark rule and local route, in each family the pod has.
      const fams = podFamilies(pod);
      expect(JSON.parse(before[2]!)).toEqual(expect.arrayContaining(fams.map((f) => ({ f, p: 32764, t: '100', m: 0x111 }))));
      for (const family of fams) {
        const routes = await Netlink.at(ns).routes({ family, table: 100 });
        expect(routes).toContainEqual(expect.objectContaining({ type: 'local', dst: 'default', dev: 'lo' }));
      }
    }
    if (pod.ips.v6.length && !empty && pod.membership !== 'ambient') {
      const lo6 = await Netlink.at(ns).addresses({ family: 6, dev: 'lo' });
      expect(lo6.map((a) => a.cidr)).toContain('::6/128');
    }

    await backend.unenroll(pod);
    for (const fam of FAMILIES) expect(await fullSave(ns, variant, fam)).not.toMatch(/SHUNT_/);
    expect(await ipRules(ns)).toEqual(rulesBefore);
  });

  test('config changes replace our chains; each step equals a fresh install', async () => {
    const ns = await netnses.create('steps');
    const backend = await backendFor();
    const byName = new Map(GOLDEN_CASES.map((c) => [c.name, c.pod]));
    // tproxy -> drop-invalid-tproxy-exclude-interfaces puts a new jump before a kept one (order must
    // end up as rendered); reroute-interfaces swaps the nat PREROUTING jump for SHUNT_PREROUTING's.
    const steps = ['defaults', 'dual-stack', 'tproxy-dual-stack', 'dns-capture-all', 'include-inbound-ports-empty', 'tproxy-dns-exclude-ports', 'exclude-outbound-cidrs', 'tproxy', 'drop-invalid-tproxy-exclude-interfaces', 'reroute-interfaces', 'defaults'];
    for (const s of steps) {
      const pod: MeshPod = { ...byName.get(s)!, uid: 'uid-steps', netnsPath: ns };
      const r = await backend.enrollWithResult(pod);
      expect(r.changed).toBe(true);
      await expectInstalled(ns, backend, pod);
    }
    // back to REDIRECT: no TPROXY policy routing left behind
    expect(await ipRules(ns)).not.toMatch(/"m":1337/);
    await backend.stop({ cleanup: true });
  });

  test('ambient: one restore run per family; sidecar <-> ambient switches leave no routing of the other', async () => {
    const ns = await netnses.create('amb-steps');
    const backend = await backendFor();
    const restores = jest.spyOn(NetnsIptables.prototype, 'restore');
    try {
      const dual = { v4: ['198.18.0.10'], v6: ['2001:db8:1::a'] };
      const amb = withDns(ambientPod({ ...podUid('amb-steps'), netnsPath: ns, ips: dual }));
      const r = await backend.enrollWithResult(amb);
      // raw, mangle and nat in each family, but one iptables-restore per family.
      expect(r).toEqual({ changed: true, transactions: 6 });
      expect(restores.mock.calls.map((c) => c[0])).toEqual([4, 6]);
      await expectInstalled(ns, backend, amb);

      const steps: MeshPod[] = [
        sidecarPod({ ...podUid('amb-steps'), netnsPath: ns, interceptionMode: 'TPROXY', ips: dual }),
        bypassInbound(ambientPod({ ...podUid('amb-steps'), netnsPath: ns })),
        sidecarPod({ ...podUid('amb-steps'), netnsPath: ns }),
        amb,
      ];
      for (const pod of steps) {
        restores.mockClear();
        expect((await backend.enrollWithResult(pod)).changed).toBe(true);
        expect(restores.mock.calls.length).toBeLessThanOrEqual(podFamilies(pod).length + (pod.ips.v6.length ? 0 : 1));
        await expectInstalled(ns, backend, pod);
        const rules = await ipRules(ns);
        expect(rules.includes('"m":273')).toBe(pod.membership === 'ambient');
        expect(rules.includes('"m":1337')).toBe(pod.interceptionMode === 'TPROXY');
      }
      await backend.unenroll(amb);
      expect(await ipRules(ns)).not.toMatch(/"m":(273|1337)/);
      for (const family of [4, 6] as const) expect(await Netlink.at(ns).routes({ family, table: 100 }).catch(() => [])).toEqual([]);
    } finally {
      restores.mockRestore();
    }
  });

  test('ambient: a refused restore rolls back the tables already committed (raw) and keeps the old set', async () => {
    const ns = await netnses.create('amb-refused');
    const backend = await backendFor();
    const pod = ambientPod({ ...podUid('amb-refused'), netnsPath: ns });
    await backend.enroll(pod);
    // A foreign chain jumping into our nat SHUNT_PRERT: bypassing inbound needs that chain gone, so nat is refused
    // after raw (new with DNS) went through.
    await ipt(ns, variant, 4, ['-t', 'nat', '-N', 'FOREIGN_AMB']);
    await ipt(ns, variant, 4, ['-t', 'nat', '-A', 'FOREIGN_AMB', '-j', 'SHUNT_PRERT']);
    const before = [await fullSave(ns, variant, 4), await ipRules(ns)];
    const next = withDns(bypassInbound(pod));
    const err = await backend.enroll(next).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(RestoreError);
    expect((err as RestoreError).message).toContain('pod default/amb-refused');
    expect((err as RestoreError).table).toBe('nat');
    expect((err as RestoreError).input).toMatch(/^\*raw\n[\s\S]*\nCOMMIT\n\*nat\n[\s\S]*\nCOMMIT\n$/);
    expect((err as RestoreError).rollbackError).toBeUndefined();
    expect([await fullSave(ns, variant, 4), await ipRules(ns)]).toEqual(before);
    expect((await backend.observe()).pods.find((p) => p.uid === pod.uid)?.fingerprint).toBe(backend.fingerprint(pod));
    await ipt(ns, variant, 4, ['-t', 'nat', '-F', 'FOREIGN_AMB']);
    await ipt(ns, variant, 4, ['-t', 'nat', '-X', 'FOREIGN_AMB']);
    await backend.enroll(next);
    await expectInstalled(ns, backend, next);
    await backend.stop({ cleanup: true });
    expect(await fullSave(ns, variant, 4)).not.toMatch(/SHUNT_/);
  });

  test('foreign rules, chains and routes are untouched and our jump keeps its place', async () => {
    const ns = await netnses.create('foreign');
    for (const fam of [4, 6] as const) {
      await ipt(ns, variant, fam, ['-t', 'nat', '-N', 'FOREIGN']);
      await ipt(ns, variant, fam, ['-t', 'nat', '-A', 'FOREIGN', '-p', 'tcp', '--dport', '7', '-j', 'RETURN']);
      await ipt(ns, variant, fam, ['-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '--dport', '9', '-j', 'FOREIGN']);
      await ipt(ns, variant, fam, ['-t', 'nat', '-A', 'PREROUTING', '-p', 'udp', '-j', 'RETURN']);
      await ipt(ns, variant, fam, ['-t', 'mangle', '-A', 'OUTPUT', '-p', 'udp', '-j', 'MARK', '--set-mark', '7']);
      await ipt(ns, variant, fam, ['-t', 'raw', '-A', 'PREROUTING', '-p', 'udp', '-j', 'NOTRACK']);
      await ipt(ns, variant, fam, ['-t', 'filter', '-A', 'INPUT', '-p', 'tcp', '--dport', '22', '-j', 'ACCEPT']);
    }
    const nl = Netlink.at(ns);
    await nl.addRule({ family: 4, fwmark: 7, table: 100 });
    const before = [await fullSave(ns, variant, 4), await fullSave(ns, variant, 6), await ipRules(ns)];

    const backend = await backendFor();
    const base = sidecarPod({ ...podUid('foreign'), netnsPath: ns, ips: { v4: ['198.18.0.10'], v6: ['2001:db8:1::a'] } });
    const tproxyDns = { ...base, interceptionMode: 'TPROXY' as const, proxy: { ...base.proxy, dnsPort: 15053 } };
    await backend.enroll(tproxyDns);
    await expectInstalled(ns, backend, tproxyDns);
    const during = await fullSave(ns, variant, 4);
    for (const line of before[0]!.split('\n').filter((l) => l.startsWith('-A'))) expect(during).toContain(line);

    // A rule someone appends after our jump stays after it when our rules change.
    await ipt(ns, variant, 4, ['-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '--dport', '11', '-j', 'RETURN']);
    await backend.enroll(withTraffic(base, { outbound: { excludePorts: [5432] } }));
    const out = (await fullSave(ns, variant, 4)).split('\n').filter((l) => l.startsWith('-A OUTPUT'));
    expect(out.indexOf('-A OUTPUT -j SHUNT_OUTPUT')).toBeGreaterThanOrEqual(0);
    expect(out.indexOf('-A OUTPUT -j SHUNT_OUTPUT')).toBeLessThan(out.indexOf('-A OUTPUT -p tcp -m tcp --dport 11 -j RETURN'));
    await ipt(ns, variant, 4, ['-t', 'nat', '-D', 'OUTPUT', '-p', 'tcp', '--dport', '11', '-j', 'RETURN']);

    await backend.unenroll(base);
    expect([await fullSave(ns, variant, 4), await fullSave(ns, variant, 6), await ipRules(ns)]).toEqual(before);
  });

  test('a refused restore keeps the previous rules in every table and names the pod', async () => {
    const ns = await netnses.create('refused');
    const backend = await backendFor();
    const redirect = sidecarPod({ ...podUid('refused'), netnsPath: ns });
    await backend.enroll(redirect);
    // A foreign chain that jumps into our nat SHUNT_INBOUND: TPROXY mode needs that chain gone,
    // so its nat transaction is refused after the mangle one went through.
    await ipt(ns, variant, 4, ['-t', 'nat', '-N', 'FOREIGN_REF']);
    await ipt(ns, variant, 4, ['-t', 'nat', '-A', 'FOREIGN_REF', '-j', 'SHUNT_INBOUND']);
    const before = [await fullSave(ns, variant, 4), await ipRules(ns)];

    const tproxy = { ...redirect, interceptionMode: 'TPROXY' as const };
    let err: unknown;
    try {
      await backend.enroll(tproxy);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RestoreError);
    const re = err as RestoreError;
    expect(re.message).toContain('pod default/refused');
    expect(re.table).toBe('nat');
    // One restore run for the family: mangle (committed first, then rolled back) and nat together.
    expect(re.input).toMatch(/^\*mangle\n[\s\S]*\nCOMMIT\n\*nat\n[\s\S]*\nCOMMIT\n$/);
    expect(re.rollbackError).toBeUndefined();
    expect(re.output.length).toBeGreaterThan(0);
    expect(re.message).toContain('-X SHUNT_INBOUND');
    expect([await fullSave(ns, variant, 4), await ipRules(ns)]).toEqual(before);
    const seen = (await backend.observe()).pods.find((p) => p.uid === redirect.uid);
    expect(seen?.fingerprint).toBe(backend.fingerprint(redirect));

    await ipt(ns, variant, 4, ['-t', 'nat', '-F', 'FOREIGN_REF']);
    await ipt(ns, variant, 4, ['-t', 'nat', '-X', 'FOREIGN_REF']);
    await backend.enroll(tproxy);
    await expectInstalled(ns, backend, tproxy);
    await backend.stop({ cleanup: true });
  });

  test('observe reports drift (a deleted rule, a deleted jump) and enroll repairs it', async () => {
    const ns = await netnses.create('drift');
    const backend = await backendFor();
    const pod = sidecarPod({ ...podUid('drift'), netnsPath: ns });
    await backend.enroll(pod);
    const fp = backend.fingerprint(pod);
    const observed = async () => (await backend.observe()).pods.find((p) => p.uid === pod.uid)?.fingerprint;
    expect(await observed()).toBe(fp);

    await ipt(ns, variant, 4, ['-t', 'nat', '-D', 'SHUNT_OUTPUT', '-d', '127.0.0.1/32', '-j', 'RETURN']);
    expect(await observed()).not.toBe(fp);
    expect((await backend.enrollWithResult(pod)).changed).toBe(true);
    expect(await observed()).toBe(fp);

    await ipt(ns, variant, 4, ['-t', 'nat', '-D', 'OUTPUT', '-j', 'SHUNT_OUTPUT']);
    await ipt(ns, variant, 4, ['-t', 'nat', '-A', 'PREROUTING', '-p', 'tcp', '-j', 'SHUNT_INBOUND']); // a duplicate jump
    expect(await observed()).not.toBe(fp);
    await backend.enroll(pod);
    await expectInstalled(ns, backend, pod);
    await backend.stop({ cleanup: true });
    for (const fam of FAMILIES) expect(await fullSave(ns, variant, fam)).not.toMatch(/SHUNT_/);
  });

  test('stop({cleanup: true}) removes every pod; stop({cleanup: false}) leaves rules in place', async () => {
    const nsA = await netnses.create('stopa');
    const nsB = await netnses.create('stopb');
    const stateDir = tempStateDir();
    const backend = await backendFor({ stateDir });
    const a = sidecarPod({ ...podUid('stop-a'), netnsPath: nsA, interceptionMode: 'TPROXY', ips: { v4: ['198.18.0.10'], v6: ['2001:db8:1::a'] } });
    const b = sidecarPod({ ...podUid('stop-b'), netnsPath: nsB });
    const nsC = await netnses.create('stopc');
    const c = withDns(ambientPod({ ...podUid('stop-c'), netnsPath: nsC, ips: { v4: ['198.18.0.12'], v6: ['2001:db8:1::c'] } }));
    await backend.enroll(a);
    await backend.enroll(b);
    await backend.enroll(c);
    await backend.stop({ cleanup: false });
    expect(await fullSave(nsB, variant, 4)).toMatch(/SHUNT_OUTPUT/);
    expect(await fullSave(nsC, variant, 6)).toMatch(/SHUNT_PRERT/);

    const again = await backendFor({ stateDir });
    // start() adopted all three from their records; enrolling again changes nothing.
    expect((await again.observe()).pods.map((p) => p.fingerprint)).toEqual([again.fingerprint(a), again.fingerprint(b), again.fingerprint(c)]);
    expect(await again.enrollWithResult(a)).toEqual({ changed: false, transactions: 0 });
    expect(await again.enrollWithResult(c)).toEqual({ changed: false, transactions: 0 });
    await again.enroll(b);
    expect((await again.observe()).pods.map((p) => p.fingerprint)).toEqual([again.fingerprint(a), again.fingerprint(b), again.fingerprint(c)]);
    await again.stop({ cleanup: true });
    for (const ns of [nsA, nsB, nsC]) for (const fam of FAMILIES) expect(await fullSave(ns, variant, fam)).not.toMatch(/SHUNT_/);
    expect(await ipRules(nsA)).not.toMatch(/"m":1337/);
    expect(await ipRules(nsC)).not.toMatch(/"m":273/);
    expect((await again.observe()).pods).toEqual([]);
  });
});

describe('backend without a usable variant', () => {
  test('support names the failing probes; start refuses', async () => {
    const caps = await nodeContext();
    const broken = {
      ...caps,
      caps: {
        ...caps.caps,
        iptablesVariant: null,
        features: {
          ...caps.caps.features,
          'iptables:legacy': { available: false, evidence: 'iptables-legacy: Table does not exist' },
          'iptables:nft': { available: false, evidence: 'iptables-nft: Protocol not supported' },
        },
      },
    };
    const b = new IptablesBackend();
    const s = b.support(broken.caps);
    expect(s.ok).toBe(false);
    expect(JSON.stringify(s)).toContain('Protocol not supported');
    await expect(b.start(broken)).rejects.toThrow(/cannot run on node test/);
    expect(new IptablesBackend({ variant: 'legacy' }).support(broken.caps).ok).toBe(false);
    expect(new IptablesBackend().support(caps.caps).ok).toBe(true);
  });
});
