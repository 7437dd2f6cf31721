/**
 * Where ztunnel runs relative to the pairing program's cgroup: real processes moved into real
 * cgroup v2 directories this test makes (unique names, removed after), read back through /proc.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cgroup2Mounts, cgroupV2Path, processCgroupDir, ztunnelPlacement } from './ztunnel-cgroup';

const mount = cgroup2Mounts(fs.readFileSync('/proc/self/mountinfo', 'utf8'))[0]?.mountPoint;
const base = mount ? path.join(mount, `shunt-ztcg-${randomBytes(3).toString('hex')}`) : '';
const inside = path.join(base, 'node');
const beside = path.join(base, 'other');
let child: ChildProcess;

beforeAll(async () => {
  if (!mount) throw new Error('no cgroup2 mount: the tc backend needs one');
  for (const d of [base, inside, beside]) fs.mkdirSync(d);
  child = spawn('sleep', ['30'], { stdio: 'ignore' });
  await new Promise<void>((r) => child.once('spawn', () => r()));
  fs.writeFileSync(path.join(inside, 'cgroup.procs'), String(child.pid));
});

afterAll(async () => {
  if (child && child.exitCode === null) {
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await gone;
  }
  for (const d of [inside, beside, base]) {
    for (let i = 0; i < 50 && fs.existsSync(d); i++) {
      try {
        fs.rmdirSync(d);
      } catch {
        await new Promise((r) => setTimeout(r, 20)); // the killed process leaves the cgroup moments later
      }
    }
  }
});

test("a process's cgroup v2 directory is read from /proc and resolved on the cgroup2 mount", () => {
  expect(processCgroupDir(child.pid!)).toBe(inside);
});

test('under the cgroup (itself or an ancestor) vs beside it, with the sentence status shows', () => {
  expect(ztunnelPlacement(child.pid!, inside)).toEqual({ pid: child.pid, cgroup: inside, under: true, reason: `ztunnel pid ${child.pid} in cgroup ${inside} is under ${inside}` });
  expect(ztunnelPlacement(child.pid!, base).under).toBe(true);
  expect(ztunnelPlacement(child.pid!, beside)).toEqual({ pid: child.pid, cgroup: inside, under: false, reason: `ztunnel pid ${child.pid} in cgroup ${inside} is not under ${beside}` });
  // A name that only shares a prefix is not an ancestor.
  expect(ztunnelPlacement(child.pid!, `${inside.slice(0, -1)}`).under).toBe(false);
});

test('unknown placement is null with why: pid 0 (peer in another pid namespace), a gone process', () => {
  expect(ztunnelPlacement(0, inside)).toMatchObject({ under: null, cgroup: null, reason: expect.stringContaining('pid 0 is not a visible process') });
  expect(ztunnelPlacement(2 ** 22 + 7, inside)).toMatchObject({ under: null, reason: expect.stringContaining('ENOENT') });
});

test('a cgroup2 mount whose root is not the hierarchy root (cgroup namespace): the path is taken relative to it', () => {
  const proc = fs.mkdtempSync(path.join(os.tmpdir(), 'shunt-ztcg-proc-'));
  try {
    fs.mkdirSync(path.join(proc, '42'));
    fs.mkdirSync(path.join(proc, 'self'));
    fs.writeFileSync(path.join(proc, '42', 'cgroup'), `1:name=systemd:/x\n0::/kube/${path.basename(base)}/node\n`);
    // This mount shows the hierarchy's /kube at `mount` (escaped space in an unrelated line).
    fs.writeFileSync(path.join(proc, 'self', 'mountinfo'), `30 1 0:1 / /a\\040b rw - ext4 /dev/x rw\n41 31 0:38 /kube ${mount} rw - cgroup2 cgroup2 rw\n`);
    expect(processCgroupDir(42, proc)).toBe(inside);
    fs.writeFileSync(path.join(proc, '42', 'cgroup'), '0::/elsewhere/x\n');
    expect(() => processCgroupDir(42, proc)).toThrow(/cgroup \/elsewhere\/x is under no cgroup2 mount/);
  } finally {
    fs.rmSync(proc, { recursive: true, force: true });
  }
  expect(cgroupV2Path('4:memory:/a\n0::/b/c\n')).toBe('/b/c');
  expect(cgroupV2Path('4:memory:/a\n')).toBeUndefined();
});
