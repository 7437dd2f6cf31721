// The pid -> netns index against a fake procfs: /proc/<pid>/ns/net are files, and two pids share
// a netns when their files are hard links of one inode (as nsfs shows processes of one netns).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { NetnsPidIndex } from './netns-pids';

let root: string;
let nsDir: string;

beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'shunt-proc-'));
  nsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'shunt-ns-'));
});
afterEach(() => {
  fs.rmSync(root, { recursive: true, force: true });
  fs.rmSync(nsDir, { recursive: true, force: true });
});

const netns = (name: string): string => {
  const p = path.join(nsDir, name);
  if (!fs.existsSync(p)) fs.writeFileSync(p, '');
  return p;
};
function proc(pid: number, ns: string): void {
  fs.mkdirSync(path.join(root, String(pid), 'ns'), { recursive: true });
  const link = path.join(root, String(pid), 'ns', 'net');
  fs.rmSync(link, { force: true });
  fs.linkSync(ns, link);
}
const exit = (pid: number): void => fs.rmSync(path.join(root, String(pid)), { recursive: true, force: true });

test('finds the pids of a netns; a refresh stats only pids it has not seen', () => {
  const a = netns('a');
  const b = netns('b');
  for (let pid = 100; pid < 150; pid++) proc(pid, pid % 2 ? a : b);
  fs.mkdirSync(path.join(root, 'self')); // not a pid
  let t = 1;
  const index = new NetnsPidIndex({ procRoot: root, now: () => t });
  expect(index.pidsIn(a)).toHaveLength(25);
  expect(index.refreshes).toBe(1);
  const stats = index.stats;
  proc(200, a);
  t = 2;
  index.refresh();
  // 1 stat for the new pid; the 50 known ones are not stat'ed again.
  expect(index.stats - stats).toBe(1);
  expect(index.pidsIn(a)).toContain(200);
  expect(index.size).toBe(51);
});

test('a miss refreshes once per caller start; callers that started before a refresh share it', () => {
  const a = netns('a');
  const c = netns('c');
  proc(10, a);
  let t = 1;
  const index = new NetnsPidIndex({ procRoot: root, now: () => t });
  index.refresh();
  t = 5;
  // Missed, but the refresh at t=1 started after this caller (since=0): no new refresh.
  expect(index.pidsIn(c, 0)).toEqual([]);
  expect(index.refreshes).toBe(1);
  proc(11, c);
  // A caller that started at t=3 needs a refresh that saw the node after it.
  expect(index.pidsIn(c, 3)).toEqual([11]);
  expect(index.refreshes).toBe(2);
  expect(index.pidsIn(c, 3)).toEqual([11]); // a hit costs no refresh
  expect(index.refreshes).toBe(2);
});

test('exited and reused pids never give a wrong answer', () => {
  const a = netns('a');
  const b = netns('b');
  proc(10, a);
  proc(11, a);
  const index = new NetnsPidIndex({ procRoot: root });
  expect(index.pidsIn(a)).toEqual([10, 11]);
  exit(10);
  proc(11, b); // pid 11 exited and its number went to a process in b
  expect(index.pidsIn(a, 0)).toEqual([]);
  expect(index.pidsIn(b, 0)).toEqual([11]);
  index.refresh();
  expect(index.size).toBe(1);
  expect(index.namespaces()).toEqual([{ dev: fs.statSync(b).dev, inode: fs.statSync(b).ino, pid: 11 }]);
});

test('a miss looks only at the pids allocated since (ns_last_pid), skipping threads; a wrap lists /proc again', () => {
  const a = netns('a');
  const b = netns('b');
  const lastPid = (n: number) => {
    fs.mkdirSync(path.join(root, 'sys', 'kernel'), { recursive: true });
    fs.writeFileSync(path.join(root, 'sys', 'kernel', 'ns_last_pid'), `${n}\n`);
  };
  const status = (pid: number, tgid: number) => fs.writeFileSync(path.join(root, String(pid), 'status'), `Name:\tx\nTgid:\t${tgid}\n`);
  for (let pid = 100; pid < 150; pid++) {
    proc(pid, a);
    status(pid, pid);
  }
  lastPid(149);
  let t = 1;
  const index = new NetnsPidIndex({ procRoot: root, now: () => t });
  expect(index.pidsIn(a)).toHaveLength(50);
  proc(150, b);
  status(150, 150);
  proc(151, b); // a thread of 150: /proc/151 exists but is no process of its own
  status(151, 150);
  lastPid(151);
  exit(100);
  const stats = index.stats;
  t = 2;
  expect(index.pidsIn(b, 2)).toEqual([150]);
  // 150 stat'ed to learn it and once more to verify the answer; 151 (a thread) not at all, and
  // the 49 known pids not either; pid 100's exit is not noticed yet (no listing).
  expect(index.stats - stats).toBe(2);
  expect(index.size).toBe(51);
  // pid numbers wrapped: the next refresh lists /proc, and drops what is gone. (A real /proc
  // lists no threads; this fake one would, so the thread goes first.)
  exit(151);
  lastPid(5);
  t = 3;
  expect(index.pidsIn(netns('c'), 3)).toEqual([]);
  expect(index.size).toBe(50);
});
