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
