// An interrupted `shunt-lab demo` (the README's main job) must leave the machine as it was, also
// when the signal arrives while the agent is in the middle of enrolling. What the agent path made — its bpffs pin directory, its temp dir with
// the pods file, the testbed's namespaces, every process — must be gone after the exit.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cgroup2Mount, collectGarbage } from '@shunt/testbed';

const CLI = path.join(__dirname, '../../dist/cli.js');

function childrenOf(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

function groupMembers(pgid: number): number[] {
  try {
    return execFileSync('pgrep', ['-g', String(pgid)], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function argvOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// 'group': Ctrl-C in a terminal (the agent and sidecars get SIGINT too); 'parent': a supervisor
// signalling the demo's pid only, so the demo itself must stop the agent it started.
it.each(['group', 'parent'] as const)('SIGINT to the %s mid-enroll: exit 130, no pins, temp files, namespaces or processes left', async (target) => {
  const probeNetns = () => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').map((l) => l.split(' ')[0]!).filter((n) => n.startsWith('shunt-probe-'));
  const probesBefore = probeNetns();
  const demo = spawn(process.execPath, [CLI, 'demo', '--requests', '3'], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  demo.stdout!.on('data', (d) => (output += d));
  demo.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => demo.on('exit', (code) => resolve(code)));
  const pgid = demo.pid!;
  let pins = '';
  let tmp = '';
  let testbedId: string | undefined;
  try {
    // Wait (bounded) for the agent of the first agent path: a node child running the agent CLI.
    let agentArgv: string[] = [];
    for (let i = 0; i < 600 && agentArgv.length === 0; i++) {
      for (const c of childrenOf(pgid)) {
        const argv = argvOf(c);
        if (argv.some((a) => a.endsWith('agent/dist/cli.js')) && argv.includes('--bpffs-path')) agentArgv = argv;
      }
      if (agentArgv.length === 0) await sleep(50);
    }
    expect(agentArgv).not.toHaveLength(0);
    pins = agentArgv[agentArgv.indexOf('--bpffs-path') + 1]!;
    tmp = path.dirname(agentArgv[agentArgv.indexOf('--pods-file') + 1]!);
    expect(existsSync(pins)).toBe(true);
    await sleep(300); // inside the agent's start-up / first enrolls; lets the demo's output in
    testbedId = /netns (shunt-tb-[0-9a-f]+)-node/.exec(output)?.[1];
    expect(testbedId).toBeDefined();
    process.kill(target === 'group' ? -pgid : pgid, 'SIGINT');
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([exited, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), 60_000)))]);
    clearTimeout(timer);
    expect(code).toBe(130);
    expect(output).toMatch(/SIGINT: removing/);
    expect(existsSync(pins)).toBe(false);
    expect(existsSync(tmp)).toBe(false);
    const netns = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    expect(netns.split('\n').filter((l) => l.startsWith(testbedId!))).toEqual([]);
    // Nor the scratch netns of an iptables probe the signal interrupted (the agent's start-up).
    expect(probeNetns().filter((n) => !probesBefore.includes(n))).toEqual([]);
    expect(existsSync(path.join(cgroup2Mount(), testbedId!))).toBe(false);
    expect(existsSync(path.join(tmpdir(), testbedId!))).toBe(false);
    // Bounded wait for the group to drain (children reaped after the parent's exit).
    for (let i = 0; i < 40 && groupMembers(pgid).length > 0; i++) await sleep(50);
    expect(groupMembers(pgid)).toEqual([]);
  } finally {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      /* already gone */
    }
    demo.stdout!.destroy();
    demo.stderr!.destroy();
    // What a failed run of this test would leave.
    if (pins) rmSync(pins, { recursive: true, force: true });
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    const left = testbedId && (existsSync(path.join(tmpdir(), testbedId)) || execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).includes(testbedId));
    if (testbedId && left) await collectGarbage({ onlyRunIds: [testbedId.replace('shunt-tb-', '')], force: true });
  }
}, 120_000);
