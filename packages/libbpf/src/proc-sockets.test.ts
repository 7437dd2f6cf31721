// listeningSockets() against real processes in a throwaway netns: the netns's TCP table is read
// once for all its processes, sockets are matched across every process's fds, and the host's
// sockets on the same port are not mixed in.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { listeningSockets, pidfdGetfd } from './index';
import { makeNetns, removeNetns, runId } from './__fixtures__/env';

// Parent listens on 0.0.0.0:PORT and forks: the one socket then sits in two processes.
const FORKING_LISTENER = `
import json, os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(16)
child = os.fork()
if child == 0:
    time.sleep(600)
    os._exit(0)
print(json.dumps({"parent": os.getpid(), "child": child, "fd": s.fileno()}), flush=True)
try:
    time.sleep(600)
finally:
    os.kill(child, 9)
`;

describe('listeningSockets over the processes of one netns', () => {
  const ns = runId('ps');
  let nsPath: string;
  const children: ChildProcess[] = [];
  let info: { parent: number; child: number; fd: number };
  let idle: number;
  const host = net.createServer();
  let port: number;

  beforeAll(async () => {
    nsPath = makeNetns(ns);
    // The same port on the host's loopback: must not show up for the netns's processes.
    await new Promise<void>((r) => host.listen(0, '127.0.0.1', r));
    port = (host.address() as net.AddressInfo).port;
    const py = spawn('nsenter', [`--net=${nsPath}`, 'python3', '-c', FORKING_LISTENER, String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(py);
    info = await firstJsonLine(py);
    const sleeper = spawn('nsenter', [`--net=${nsPath}`, 'sleep', '600'], { stdio: 'ignore' });
    children.push(sleeper);
    idle = sleeper.pid!;
    // The pid exists at once, but nsenter enters the netns and execs sleep a moment later: until
    // then /proc/<pid>/net/tcp is the host's table (with the host listener on the same port).
    await inNetns(idle, nsPath, 'sleep');
  });

  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    if (info) {
      try {
        process.kill(info.child, 'SIGKILL');
      } catch {
        // already gone with its parent
      }
    }
    await new Promise((r) => host.close(r));
    removeNetns(ns);
  });

  it('finds the socket in every process that holds it, reading the table once', () => {
    // nsenter execs its command, so these pids are the processes inside the netns.
    const pids = [idle, info.parent, info.child];
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const realFs = require('node:fs') as typeof fs;
    const reads = jest.spyOn(realFs, 'readFileSync');
    try {
      const found = listeningSockets({ pids, port, family: 4 });
      expect(found).toEqual([
        { pid: Math.min(info.parent, info.child), fd: info.fd, inode: expect.any(Number), family: 4, address: '0.0.0.0', port },
        { pid: Math.max(info.parent, info.child), fd: info.fd, inode: found[0]!.inode, family: 4, address: '0.0.0.0', port },
      ]);
      const tableReads = reads.mock.calls.filter(([file]) => /^\/proc\/\d+\/net\/tcp6?$/.test(String(file)));
      expect(tableReads).toEqual([[`/proc/${idle}/net/tcp`, 'utf8']]);
    } finally {
      reads.mockRestore();
    }
  });

  it('the borrowed fd is that socket', () => {
    const [s] = listeningSockets({ pids: [info.parent], port, family: 4 });
    const fd = pidfdGetfd(s!.pid, s!.fd);
    try {
      expect(fs.fstatSync(fd).ino).toBe(s!.inode);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('keeps netns apart: the host listener on the same port is only found through host processes', () => {
    const inNetns = listeningSockets({ pids: [info.parent], port });
    expect(inNetns.map((s) => s.address)).toEqual(['0.0.0.0']);
    const onHost = listeningSockets({ pids: [process.pid], port });
    expect(onHost.map((s) => [s.pid, s.address])).toEqual([[process.pid, '127.0.0.1']]);
  });

  it('skips processes that are gone, reading through the next one', () => {
    const gone = Number(fs.readFileSync('/proc/sys/kernel/pid_max', 'utf8')) + 1;
    expect(listeningSockets({ pids: [gone, info.parent], port, family: 4 }).map((s) => s.pid)).toEqual([info.parent]);
    expect(listeningSockets({ pids: [gone], port })).toEqual([]);
    expect(listeningSockets({ pids: [], port })).toEqual([]);
  });

  it('a process without the socket, or another port, finds nothing', () => {
    expect(listeningSockets({ pids: [idle], port })).toEqual([]);
    expect(listeningSockets({ pids: [info.parent], port, family: 6 })).toEqual([]);
  });

  it('bad input names the field and value', () => {
    expect(() => listeningSockets({ pids: [0], port })).toThrow(/every pid must be a positive integer, got 0/);
    expect(() => listeningSockets({ pids: [info.parent], port: 0 })).toThrow(/port must be 1..65535, got 0/);
    expect(() => listeningSockets({ pids: [info.parent], port, family: 5 as 4 })).toThrow(/family must be 4 or 6, got 5/);
  });
});

/** Waits (bounded: 5 s) until pid is `comm` and in the netns at nsPath. */
async function inNetns(pid: number, nsPath: string, comm: string): Promise<void> {
  const want = fs.statSync(nsPath).ino;
  const deadline = Date.now() + 5000;
  let seen = '';
  for (;;) {
    try {
      seen = `${fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim()} in netns ${fs.statSync(`/proc/${pid}/ns/net`).ino}`;
      if (seen === `${comm} in netns ${want}`) return;
    } catch (err) {
      seen = (err as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`pid ${pid} is not ${comm} in netns ${want} after 5 s: ${seen}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function firstJsonLine<T>(child: ChildProcess): Promise<T> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`no output after 10 s: ${err}`)), 10_000);
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (!out.includes('\n')) return;
      clearTimeout(timer);
      resolve(JSON.parse(out.split('\n')[0]!) as T);
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited ${String(code)}: ${err}`));
    });
  });
}
