// A pod with no record is installed with one guarded iptables-restore per family and no
// iptables-save first (pod-netns.ts installFresh): real netns, real iptables-legacy and -nft. When
// something of ours is there anyway (rules whose record is gone), the guarded restore is refused
// whole and the usual read-and-diff path makes the netns exactly the rendered set (no second jump).

import type { MeshPod } from '@shunt/core';
import { runCommand } from '@shunt/netlink';
import { IptablesBackend } from './backend';
import { NetnsIptables } from './netns-iptables';
import type { IptablesVariant } from './options';
import { canonicalTable, FAMILIES, familyRules, TABLES } from './plan';
import { podFamilies } from './render';
import { parseSave } from './save';
import { GOLDEN_CASES, sidecarPod } from './__fixtures__/pods';
import { disposeStateDirs, Netnses, nodeContext, tempStateDir } from './__fixtures__/node';

const VARIANTS: IptablesVariant[] = ['legacy', 'nft'];

describe.each(VARIANTS)('iptables-%s: fresh install', (variant) => {
  const netnses = new Netnses();
  const backends: IptablesBackend[] = [];
  afterAll(async () => {
    for (const b of backends) await b.stop({ cleanup: true }).catch(() => undefined);
    await netnses.disposeAll();
    disposeStateDirs();
  });

  async function backendFor(): Promise<IptablesBackend> {
    const b = new IptablesBackend({ variant, stateDir: tempStateDir() });
    await b.start(await nodeContext());
    backends.push(b);
    return b;
  }

  /** Our chains, rules and jumps per family and table, as the kernel reports them, against the rendered plan. */
  async function expectExactly(ns: string, backend: IptablesBackend, pod: MeshPod): Promise<void> {
    const plan = backend.render(pod);
    for (const fam of FAMILIES) {
      const saved = parseSave(await runCommand([`${fam === 4 ? 'iptables' : 'ip6tables'}-${variant}-save`], { netns: ns }));
      for (const table of TABLES) {
        const want = podFamilies(pod).includes(fam) ? familyRules(plan, fam)[table] : undefined;
        expect({ fam, table, ours: canonicalTable(saved[table]?.ours) }).toEqual({ fam, table, ours: canonicalTable(want) });
      }
    }
    expect((await backend.observe()).pods.find((p) => p.uid === pod.uid)?.fingerprint).toBe(backend.fingerprint(pod));
  }

  test('a new pod: one restore, no save; then the usual path (a re-enroll changes nothing)', async () => {
    const ns = await netnses.create('fresh');
    const backend = await backendFor();
    const pod = sidecarPod({ uid: 'uid-fresh', name: 'fresh', netnsPath: ns });
    const save = jest.spyOn(NetnsIptables.prototype, 'save');
    const restore = jest.spyOn(NetnsIptables.prototype, 'restore');
    try {
      const r = await backend.enrollWithResult(pod);
      expect(r.changed).toBe(true);
      expect(save).not.toHaveBeenCalled();
      expect(restore.mock.calls.map((c) => [c[0], c[1].split('\n').filter((l) => l.startsWith('-N ')).length > 0])).toEqual([[4, true]]);
      save.mockClear();
      restore.mockClear();
      await expectExactly(ns, backend, pod);
      expect(await backend.enrollWithResult(pod)).toEqual({ changed: false, transactions: 0 });
      expect(restore).not.toHaveBeenCalled();
    } finally {
      save.mockRestore();
      restore.mockRestore();
    }
  });

  test('a pod whose rules span two tables (DNS capture: raw and nat) takes the read-and-diff path', async () => {
    const ns = await netnses.create('two-tables');
    const backend = await backendFor();
    // A golden case with more than one IPv4 table and no routing: a refusal there could follow a commit.
    const c = GOLDEN_CASES.find((g) => {
      const plan = backend.render({ ...g.pod, netnsPath: ns });
      const r = plan.routing;
      return !g.opts && g.pod.ips.v6.length === 0 && r.policyRules.length + r.localRoutes.length + r.loopbackAddresses.length === 0 && Object.keys(familyRules(plan, 4)).length > 1;
    })!;
    expect(c).toBeDefined();
    const pod = { ...c.pod, uid: 'uid-two-tables', netnsPath: ns };
    const save = jest.spyOn(NetnsIptables.prototype, 'save');
    try {
      expect((await backend.enrollWithResult(pod)).changed).toBe(true);
      expect(save).toHaveBeenCalled();
    } finally {
      save.mockRestore();
    }
    await expectExactly(ns, backend, pod);
  });

  test('our rules without a record (state dir lost): the guarded restore is refused, the netns ends up exactly as rendered', async () => {
    const ns = await netnses.create('unrecorded');
    const pod = sidecarPod({ uid: 'uid-unrecorded', name: 'unrecorded', netnsPath: ns });
    // Another agent's state dir: its records are not ours, its rules are (our chain names).
    const before = await backendFor();
    await before.enroll({ ...pod, traffic: { ...pod.traffic, inbound: { ...pod.traffic.inbound, exclude: [...pod.traffic.inbound.exclude, 9999] } } });
    const backend = await backendFor();
    const restore = jest.spyOn(NetnsIptables.prototype, 'restore');
    try {
      expect((await backend.enrollWithResult(pod)).changed).toBe(true);
      // The guarded one (refused), then the diff of what the save showed.
      expect(restore.mock.calls.length).toBe(2);
      expect(restore.mock.calls[0]![1]).toMatch(/^-N /m);
      expect(restore.mock.calls[1]![1]).not.toMatch(/^-N /m);
    } finally {
      restore.mockRestore();
    }
    await expectExactly(ns, backend, pod);
  });
});
