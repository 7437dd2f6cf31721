// dispose(), signals and gc: whatever happens, a run leaves nothing behind, and gc removes only
// testbed leftovers of dead runs.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { createNetns, deleteNetns, listNetns, Netlink } from '@shunt/netlink';
import { cgroup2Mount, collectGarbage, Testbed } from './index';
import { builtPackageMain } from './runtime-modules';

function pidsUnder(dir: string): number[] {
  if (!existsSync(dir)) return [];
  const own = readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  const kids = readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory());
  return [...own, ...kids.flatMap((k) => pidsUnder(path.join(dir, k.name)))];
}

async function leftovers(runId: string): Promise<string[]> {
  const prefix = `shunt-tb-${runId}`;
  const found = (await listNetns()).filter((n) => n.startsWith(`${prefix}-`));
  if (existsSync(path.join(cgroup2Mount(), prefix))) found.push(`cgroup ${prefix}`);
  const links = await Netlink.current().links();
  found.push(...links.filter((l) => l.name.startsWith(`stb${runId}`)).map((l) => `link ${l.name} in root netns`));
  return found;
}

const alive = (pid: number) => existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));

test('dispose() removes netns, interfaces, cgroups, processes and the state dir', async () => {
  const tb = await Testbed.create({ nodes: 2, pods: [{ name: 'a', mesh: 'sidecar' }, { name: 'b', node: 'node1' }] });
  let pids: number[] = [];
  try {
    await tb.startEchoServer('b');
    const sleeper = tb.exec('a', ['sleep', '60']);
    // The wrapper joins the cgroup a moment after spawn; wait for it (bounded).
    for (let i = 0; i < 100 && !pidsUnder(tb.cgroupRoot).includes(sleeper.pid); i++) await new Promise((r) => setTimeout(r, 20));
    pids = pidsUnder(tb.cgroupRoot);
    expect(pids).toContain(sleeper.pid);
    expect(pids.length).toBeGreaterThanOrEqual(3); // haproxy, echo, sleep (+ proxy6)
    expect(await leftovers(tb.runId)).toHaveLength(5); // 2 node netns, 2 pod netns, the cgroup
    // Interfaces exist only inside the run's netns, never in the root netns.
    expect((await tb.netlink('node0').links()).map((l) => l.name)).toEqual(expect.arrayContaining([`stb${tb.runId}br`, `stb${tb.runId}p0`]));
  } finally {
    await tb.dispose();
  }
  expect(await leftovers(tb.runId)).toEqual([]);
  expect(existsSync(tb.stateDir)).toBe(false);
  expect(pids.filter(alive)).toEqual([]);
  await tb.dispose(); // idempotent
  expect(() => tb.exec('a', ['true'])).toThrow(/disposed/);
}, 60_000);

test('a create() that fails half-way removes what it made, and nothing else', async () => {
  const runId = (0x200 + (randomBytes(2).readUInt16BE(0) % 0xfc00)).toString(16).padStart(4, '0');
  // Someone else's netns occupies the name of the second pod: create() must fail there.
  const blocker = `shunt-tb-${runId}-pod-b`;
  await createNetns(blocker);
  try {
    await expect(Testbed.create({ runId, pods: [{ name: 'a', mesh: 'sidecar' }, { name: 'b' }] })).rejects.toThrow(/File exists/);
    expect(await leftovers(runId)).toEqual([blocker]);
  } finally {
    await deleteNetns(blocker, { ignoreMissing: true });
  }
}, 60_000);

test('bad specs are rejected with the pod and field named', async () => {
  await expect(Testbed.create({ pods: [{ name: 'Bad_Name' }] })).rejects.toThrow(/pod name "Bad_Name"/);
  await expect(Testbed.create({ pods: [{ name: 'a', node: 'nope' }] })).rejects.toThrow(/pod a: node "nope"/);
  await expect(Testbed.create({ nodes: 4, pods: [] })).rejects.toThrow(/nodes: want 1..3/);
});

/** Starts a child process that builds a testbed from the built package and reports its run id. */
async function childWithTestbed(): Promise<{ child: ReturnType<typeof spawn>; runId: string; exited: Promise<number | null> }> {
  const main = builtPackageMain('@shunt/testbed');
  if ('unavailable' in main) throw new Error(main.unavailable);
  const src = `
    const { Testbed } = require(${JSON.stringify(main.path)});
    Testbed.create({ pods: [{ name: 'a', mesh: 'sidecar' }, { name: 'b' }] }).then(async (tb) => {
      await tb.startEchoServer('b');
      process.stdout.write(JSON.stringify({ runId: tb.runId }) + '\\n');
      setTimeout(() => process.exit(3), 60000);
    }, (e) => { console.error(e); process.exit(2); });`;
  const child = spawn(process.execPath, ['-e', src], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((r) => child.once('exit', (code, sig) => r(code ?? (sig ? -1 : null))));
  let err = '';
  child.stderr!.on('data', (b) => (err += b));
  const runId = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`child did not report a run id: ${err}`)), 30_000);
    child.stdout!.once('data', (b: Buffer) => {
      clearTimeout(t);
      resolve((JSON.parse(b.toString()) as { runId: string }).runId);
    });
    child.once('exit', () => reject(new Error(`child exited early: ${err}`)));
  });
  return { child, runId, exited };
}

test('SIGTERM to the owning process removes its testbed', async () => {
  const { child, runId, exited } = await childWithTestbed();
  expect((await leftovers(runId)).length).toBeGreaterThan(0);
  child.kill('SIGTERM');
  expect(await exited).toBe(143);
  expect(await leftovers(runId)).toEqual([]);
}, 60_000);

test('gc removes the leftovers of a crashed run and nothing else', async () => {
  const { child, runId, exited } = await childWithTestbed();
  const crashedPids = pidsUnder(path.join(cgroup2Mount(), `shunt-tb-${runId}`));
  child.kill('SIGKILL');
  await exited;
  expect((await leftovers(runId)).length).toBe(4); // node + 2 pods + cgroup
  expect(crashedPids.filter(alive).length).toBeGreaterThan(0); // haproxy, echo still running

  const bystander = `shunt-bystander-${randomBytes(3).toString('hex')}`;
  const bystanderCg = path.join(cgroup2Mount(), bystander);
  await createNetns(bystander);
  mkdirSync(bystanderCg);
  const live = await Testbed.create({ pods: [{ name: 'x' }] });
  try {
    const report = await collectGarbage();
    expect(report.removed.map((r) => r.runId)).toContain(runId);
    expect(report.skippedLive).toContain(live.runId);
    expect(report.errors).toEqual([]);
    expect(await leftovers(runId)).toEqual([]);
    expect(crashedPids.filter(alive)).toEqual([]);
    // Not ours to touch: a live testbed, a netns and a cgroup without the testbed prefix.
    expect((await leftovers(live.runId)).length).toBe(3);
    expect(await listNetns()).toContain(bystander);
    expect(existsSync(bystanderCg)).toBe(true);
  } finally {
    await live.dispose();
    await deleteNetns(bystander, { ignoreMissing: true });
    if (existsSync(bystanderCg)) rmdirSync(bystanderCg);
  }
}, 90_000);
