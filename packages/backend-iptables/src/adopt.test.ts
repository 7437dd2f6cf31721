// Adoption from another process: pods enrolled by process A (a child node process) are found by a
// fresh backend in this process through the state records alone, observed with the right
// fingerprint, and removed with stop({cleanup: true}): no SHUNT_* chains, no TPROXY rule or route,
// no records. Records of a netns that went away or was replaced are dropped. And sweep() finds our
// state with no records at all, leaving an istio-iptables pod's mark rule alone.

import { execFile } from 'node:child_process';
import { existsSync, promises as fs, readdirSync } from 'node:fs';
import path from 'node:path';
import type { MeshPod } from '@shunt/core';
import { netnsCookie } from '@shunt/libbpf';
import { createNetns, deleteNetns, Netlink, runCommand } from '@shunt/netlink';
import { IptablesBackend } from './backend';
import type { IptablesVariant } from './options';
import { recordFileName } from './state-store';
import { sidecarPod } from './__fixtures__/pods';
import { ambientPod, withDns } from './__fixtures__/ambient-pods';
import { disposeStateDirs, Netnses, netnsName, nodeContext, probeCaps, RUN_ID, tempStateDir } from './__fixtures__/node';

const FIXTURES = path.join(__dirname, '__fixtures__');

/** fingerprint(pod) of a backend with default options (pure; needs no start). */
const backend0 = (pod: MeshPod) => new IptablesBackend({ stateDir: null }).fingerprint(pod);

function runChild(input: { variant: IptablesVariant; stateDir: string; pods: MeshPod[] }): Promise<{ pid: number; fingerprints: Record<string, string> }> {
  return probeCaps().then(
    (caps) =>
      new Promise((resolve, reject) => {
        execFile(
          process.execPath,
          ['-r', path.join(FIXTURES, 'ts-register.js'), path.join(FIXTURES, 'enroll-child.ts'), JSON.stringify({ ...input, caps })],
          { timeout: 60_000, encoding: 'utf8' },
          (err, stdout, stderr) => {
            if (err) return reject(new Error(`child process failed: ${err.message}\n${stderr}`));
            resolve(JSON.parse(stdout));
          },
        );
      }),
  );
}

async function save(ns: string, variant: IptablesVariant, fam: 4 | 6): Promise<string> {
  return runCommand([`${fam === 4 ? 'iptables' : 'ip6tables'}-${variant}-save`], { netns: ns });
}

/** Policy rules and the routes of tables 133 and 100, both families: what TPROXY and ambient's connmark add. */
async function routingOf(ns: string): Promise<string> {
  const nl = Netlink.at(ns);
  const out: unknown[] = [];
  for (const family of [4, 6] as const) {
    out.push((await nl.rules({ family })).map((r) => [r.priority, r.table, r.fwmark ?? null, r.fwmask ?? null]));
    out.push(await nl.routes({ family, table: 133 }).catch(() => []));
    out.push(await nl.routes({ family, table: 100 }).catch(() => []));
  }
  return JSON.stringify(out);
}

const netnses = new Netnses();
afterAll(async () => {
  await netnses.disposeAll();
  disposeStateDirs();
});

describe('records let a fresh process adopt, observe and clean up', () => {
  let variant: IptablesVariant;
  beforeAll(async () => {
    variant = (await probeCaps()).iptablesVariant!;
    expect(variant).not.toBeNull();
  });

  async function freshBackend(stateDir: string, readOnly = false): Promise<IptablesBackend> {
    const b = new IptablesBackend({ variant, stateDir, netnsCookie });
    await b.start({ ...(await nodeContext()), ...(readOnly ? { readOnly: true } : {}) });
    return b;
  }

  test('pods enrolled in process A: start() adopts them, observe() matches, stop({cleanup}) removes everything', async () => {
    const stateDir = tempStateDir();
    const nsT = await netnses.create('adopt-tproxy');
    const nsR = await netnses.create('adopt-redirect');
    const nsA = await netnses.create('adopt-ambient');
    const routingBefore = [await routingOf(nsT), await routingOf(nsR), await routingOf(nsA)];
    const tproxy = sidecarPod({
      uid: 'uid-adopt-tproxy',
      name: 'adopt-tproxy',
      netnsPath: nsT,
      netnsCookie: netnsCookie(nsT).toString(),
      interceptionMode: 'TPROXY',
      ips: { v4: ['198.18.0.10'], v6: ['2001:db8:1::a'] },
    });
    const redirect = sidecarPod({ uid: 'uid-adopt/redirect', name: 'adopt-redirect', netnsPath: nsR, proxy: { uid: 1337, gid: 1337, outboundPort: 15001, inboundPort: 15006, dnsPort: 15053 } });

    // An ambient pod (istio-cni's in-pod set, dual stack, DNS): its connmark rule and route are in the record too.
    const ambient = withDns(ambientPod({ uid: 'uid-adopt-ambient', name: 'adopt-ambient', netnsPath: nsA, ips: { v4: ['198.18.0.11'], v6: ['2001:db8:1::b'] } }));

    const child = await runChild({ variant, stateDir, pods: [tproxy, redirect, ambient] });
    expect(child.pid).not.toBe(process.pid);
    expect(await save(nsT, variant, 6)).toMatch(/SHUNT_TPROXY/);
    expect(await save(nsA, variant, 6)).toMatch(/SHUNT_PRERT/);
    expect(await routingOf(nsT)).not.toEqual(routingBefore[0]);
    expect(await routingOf(nsA)).toContain('[32764,"100",273,4095]');
    expect(readdirSync(stateDir).sort()).toEqual([recordFileName(redirect.uid), recordFileName(tproxy.uid), recordFileName(ambient.uid)].sort());

    // `shunt status`: a read-only start sees the same and may change nothing.
    const status = await freshBackend(stateDir, true);
    expect((await status.observe()).pods.map((p) => p.fingerprint)).toEqual([backend0(ambient), backend0(tproxy), backend0(redirect)]);
    await expect(status.enroll(tproxy)).rejects.toThrow(/read-only: enroll of pod default\/adopt-tproxy/);
    await expect(status.stop({ cleanup: true })).rejects.toThrow(/read-only/);

    const backend = await freshBackend(stateDir);
    const state = await backend.observe();
    expect(state.pods.map((p) => [p.uid, p.namespace, p.name, p.fingerprint])).toEqual([
      [ambient.uid, 'default', 'adopt-ambient', backend.fingerprint(ambient)],
      [tproxy.uid, 'default', 'adopt-tproxy', backend.fingerprint(tproxy)],
      [redirect.uid, 'default', 'adopt-redirect', backend.fingerprint(redirect)],
    ]);
    expect(state.pods.map((p) => p.fingerprint)).toEqual([child.fingerprints[ambient.uid], child.fingerprints[tproxy.uid], child.fingerprints[redirect.uid]]);
    expect(state.pods[1]!.detail).toMatchObject({ netnsPath: nsT, variant, families: [4, 6] });
    // The adopting process changes nothing when the same pod is enrolled again.
    expect(await backend.enrollWithResult(tproxy)).toEqual({ changed: false, transactions: 0 });
    expect(await backend.enrollWithResult(ambient)).toEqual({ changed: false, transactions: 0 });

    await backend.stop({ cleanup: true });
    for (const ns of [nsT, nsR, nsA]) for (const fam of [4, 6] as const) expect(await save(ns, variant, fam)).not.toMatch(/SHUNT_/);
    expect([await routingOf(nsT), await routingOf(nsR), await routingOf(nsA)]).toEqual(routingBefore);
    expect(existsSync(stateDir)).toBe(false);
    expect((await (await freshBackend(stateDir)).observe()).pods).toEqual([]);
  });

  test('records of a deleted netns, or of a new netns at the same path, are dropped at start()', async () => {
    const stateDir = tempStateDir();
    const goneName = netnsName('adopt-gone');
    const reusedName = netnsName('adopt-reused');
    const gone = await createNetns(goneName);
    let reused = await createNetns(reusedName);
    try {
      const podGone = sidecarPod({ uid: 'uid-gone', name: 'gone', netnsPath: gone });
      const podReused = sidecarPod({ uid: 'uid-reused', name: 'reused', netnsPath: reused });
      await runChild({ variant, stateDir, pods: [podGone, podReused] });
      const oldCookie = netnsCookie(reused);
      await deleteNetns(goneName);
      await deleteNetns(reusedName);
      reused = await createNetns(reusedName);
      expect(netnsCookie(reused)).not.toBe(oldCookie);

      // Read-only (`shunt status`) skips them but leaves the files to the agent.
      expect((await (await freshBackend(stateDir, true)).observe()).pods).toEqual([]);
      expect(readdirSync(stateDir)).toHaveLength(2);
      const backend = await freshBackend(stateDir);
      expect((await backend.observe()).pods).toEqual([]);
      expect(readdirSync(stateDir)).toEqual([]);
      expect(await save(reused, variant, 4)).not.toMatch(/SHUNT_/);
      await backend.stop({ cleanup: true });
    } finally {
      await deleteNetns(goneName, { ignoreMissing: true });
      await deleteNetns(reusedName, { ignoreMissing: true });
    }
  });

  test('an unreadable record is reported, not adopted, and does not hide the others', async () => {
    const stateDir = tempStateDir();
    const ns = await netnses.create('adopt-bad');
    const pod = sidecarPod({ uid: 'uid-bad-neighbour', name: 'neighbour', netnsPath: ns });
    await runChild({ variant, stateDir, pods: [pod] });
    await fs.writeFile(path.join(stateDir, 'broken.json'), '{"format":"shunt-iptables-pod/1","pod":{"uid":"x"');
    const backend = await freshBackend(stateDir);
    const state = await backend.observe();
    expect(state.pods.map((p) => p.uid)).toEqual([pod.uid]);
    expect(JSON.stringify(state.nodeDetail.invalidRecords)).toContain('broken.json');
    await backend.stop({ cleanup: true });
    expect(await save(ns, variant, 4)).not.toMatch(/SHUNT_/);
    await fs.rm(path.join(stateDir, 'broken.json'));
  });
});

describe('sweep() without records', () => {
  test.each<IptablesVariant>(['legacy', 'nft'])('iptables-%s: removes SHUNT_* chains and our TPROXY routing; an istio-iptables pod keeps its mark rule', async (variant) => {
    const prefix = `shunt-ipt-${RUN_ID}-sw${variant[0]}`;
    const names = [`${prefix}-tproxy`, `${prefix}-redirect`, `${prefix}-istio`, `${prefix}-ambient`];
    const [nsT, nsR, nsI, nsA] = await Promise.all(names.map((n) => createNetns(n)));
    try {
      for (const ns of [nsT!, nsR!, nsI!, nsA!]) await Netlink.at(ns).setUp('lo');
      const before = [await routingOf(nsT!), await routingOf(nsR!), await routingOf(nsA!)];
      const installer = new IptablesBackend({ variant, stateDir: null });
      await installer.start(await nodeContext());
      await installer.enroll(sidecarPod({ uid: 'uid-sw-t', netnsPath: nsT, interceptionMode: 'TPROXY', ips: { v4: ['198.18.0.10'], v6: ['2001:db8:1::a'] } }));
      await installer.enroll(sidecarPod({ uid: 'uid-sw-r', netnsPath: nsR }));
      await installer.enroll(ambientPod({ uid: 'uid-sw-a', netnsPath: nsA, ips: { v4: ['198.18.0.11'], v6: ['2001:db8:1::b'] } }));
      // What istio-init leaves in a TPROXY pod: its own chain and the same mark rule.
      await runCommand([`iptables-${variant}`, '-t', 'mangle', '-N', 'ISTIO_DIVERT'], { netns: nsI });
      await Netlink.at(nsI!).addRule({ family: 4, fwmark: 1337, table: 133 });
      const istioRouting = await routingOf(nsI!);

      const report = await new IptablesBackend({ stateDir: tempStateDir() }).sweep({ netnsPrefix: prefix });
      expect(report.errors).toEqual([]);
      expect(report.scanned).toBe(4);
      const swept = Object.fromEntries(report.swept.map((s) => [path.basename(s.netnsPath), s]));
      expect(Object.keys(swept).sort()).toEqual([names[1], names[0], names[3]].sort());
      expect(swept[names[3]!]!.routing).toEqual(expect.arrayContaining(['ip -4 rule fwmark 0x111/0xfff pref 32764 lookup 100', 'ip -6 rule fwmark 0x111/0xfff pref 32764 lookup 100', 'ip -6 route local default dev lo table 100']));
      expect(swept[names[0]!]!.tables).toEqual(expect.arrayContaining([`${variant}/v4/mangle`, `${variant}/v4/nat`, `${variant}/v6/mangle`, `${variant}/v6/nat`]));
      expect(swept[names[0]!]!.routing).toEqual(expect.arrayContaining(['ip -4 rule fwmark 0x539 lookup 133', 'ip -6 route local default dev lo table 133']));
      for (const ns of [nsT!, nsR!, nsA!]) for (const fam of [4, 6] as const) expect(await save(ns, variant, fam)).not.toMatch(/SHUNT_/);
      expect([await routingOf(nsT!), await routingOf(nsR!), await routingOf(nsA!)]).toEqual(before);
      expect(await routingOf(nsI!)).toEqual(istioRouting);
      expect(await save(nsI!, variant, 4)).toMatch(/ISTIO_DIVERT/);
    } finally {
      for (const n of names) await deleteNetns(n, { ignoreMissing: true });
    }
  });
});
