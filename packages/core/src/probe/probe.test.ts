// Runs the real probe on this machine. Features the running kernel is new enough for must be found;
// a feature is only excused where the kernel release truly predates it (and the test says so).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { release } from 'node:os';
import { compareKernel, formatKernel, parseKernelRelease } from '../kernel';
import { FEATURE_SINCE } from '../selection/rules';
import { BPF_FEATURE_PROBES } from './bpf-features';
import type { FeatureName, NodeCapabilities } from '../types';
import { chooseVariant } from './iptables';
import { findMount, parseMounts } from './mounts';
import { probeNode } from './node';

const netnsList = () => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });

describe('probeNode on this machine', () => {
  let caps: NodeCapabilities;
  beforeAll(async () => {
    caps = await probeNode({ iptablesScratch: true });
    // The JSON `shunt doctor` will show; printed so a test run documents the machine.
    console.log(JSON.stringify(caps, null, 2));
  });

  it('reads the running kernel, the real cgroup2 and bpffs mounts, and BTF', () => {
    expect(caps.kernelRelease).toBe(release());
    expect(caps.kernel).toEqual(parseKernelRelease(release()));
    const mounts = parseMounts(readFileSync('/proc/mounts', 'utf8'));
    expect(caps.cgroup2Path).toBe(findMount(mounts, 'cgroup2', '/sys/fs/cgroup')?.mountPoint ?? null);
    expect(caps.cgroup2Path).not.toBeNull();
    expect(caps.bpffsPath).toBe('/sys/fs/bpf');
    expect(caps.features.btf).toMatchObject({ available: true, evidence: expect.stringContaining('/sys/kernel/btf/vmlinux') });
  });

  const BPF_FEATURES = Object.keys(BPF_FEATURE_PROBES) as FeatureName[];
  it.each(BPF_FEATURES)('%s is found where the kernel has it', (name) => {
    const f = caps.features[name];
    expect(f.evidence.length).toBeGreaterThan(0);
    if (compareKernel(caps.kernel, FEATURE_SINCE[name]) < 0) {
      console.log(`skip: kernel ${caps.kernelRelease} predates ${name} (upstream ${formatKernel(FEATURE_SINCE[name])}); probe said: ${f.evidence}`);
      return;
    }
    expect(f).toMatchObject({ available: true });
  });

  it('a helper used from several program types is probed from each, every answer in the evidence', () => {
    const e = caps.features['helper:get_netns_cookie'].evidence;
    for (const t of ['cgroup_sock_addr', 'sock_ops', 'sk_msg', 'cgroup_sockopt']) expect(e).toMatch(new RegExp(`\\[(yes|NO)\\] bpf_get_netns_cookie #\\d+ from ${t}: `));
    expect(caps.features['attach:cgroup_getpeername'].evidence).toMatch(/cgroup_inet4_getpeername.*cgroup_inet6_getpeername/);
    expect(caps.features['prog:sk_lookup'].evidence).toMatch(/sk_lookup.*sk_assign.*netns/);
  });

  it('iptables: both variants evaluated in a scratch netns, TPROXY usable, a variant chosen, nothing left behind', () => {
    for (const v of ['iptables:legacy', 'iptables:nft'] as const) {
      expect(caps.features[v]).toMatchObject({ available: true, evidence: expect.stringMatching(/saw 1 packet\(s\) of 1 sent over lo/) });
    }
    expect(caps.features['iptables:tproxy']).toMatchObject({ available: true, evidence: expect.stringContaining('accepted') });
    expect(caps.iptablesVariant === 'nft' || caps.iptablesVariant === 'legacy').toBe(true);
    expect(caps.features[`iptables:${caps.iptablesVariant!}`].evidence).toContain('chosen:');
    expect(netnsList()).not.toMatch(/shunt-probe-/);
  });

  it('without the scratch test only the binaries are checked', async () => {
    const light = await probeNode({ iptablesScratch: false });
    expect(light.features['iptables:nft'].evidence).toMatch(/functional test skipped/);
    expect(light.features['iptables:tproxy']).toEqual({ available: false, evidence: 'not probed (iptablesScratch=false)' });
  });

  it('reports missing mounts and BTF with evidence instead of failing', async () => {
    const c = await probeNode({ iptablesScratch: false, mountsFile: '/nonexistent/mounts', btfPath: '/nonexistent/vmlinux' });
    expect(c.cgroup2Path).toBeNull();
    expect(c.features.cgroup2.evidence).toMatch(/cannot read \/nonexistent\/mounts/);
    expect(c.features.btf).toEqual({ available: false, evidence: expect.stringContaining('/nonexistent/vmlinux missing') });
  });
});

describe('probe helpers', () => {
  it('parses a hybrid cgroup layout and escaped mount points', () => {
    const m = parseMounts(
      ['tmpfs /sys/fs/cgroup tmpfs ro,nosuid 0 0', 'cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0', 'bpf /sys/fs/bpf bpf rw 0 0', 'bpf /run/my\\040bpf bpf rw 0 0'].join('\n'),
    );
    expect(findMount(m, 'cgroup2', '/sys/fs/cgroup')?.mountPoint).toBe('/sys/fs/cgroup/unified');
    expect(findMount(m, 'bpf', '/sys/fs/bpf')?.mountPoint).toBe('/sys/fs/bpf');
    expect(m[3]!.mountPoint).toBe('/run/my bpf');
  });

  it('chooses the iptables variant as Istio does', () => {
    expect(chooseVariant(true, true, 12).variant).toBe('legacy');
    expect(chooseVariant(true, true, 0).variant).toBe('nft');
    expect(chooseVariant(true, false, 0).variant).toBe('legacy');
    expect(chooseVariant(false, false, 0)).toEqual({ variant: null, why: expect.stringContaining('neither') });
  });
});

describe('a probe killed mid-way (SIGKILL during agent start-up) leaks no scratch netns', () => {
  it('the next probe removes the orphan of a dead process, and never one of a live process', async () => {
    const { spawn } = await import('node:child_process');
    const { existsSync, readdirSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { probeIptables } = await import('./iptables');
    // A real probe in a child process, SIGKILLed while its scratch netns exists.
    const dist = join(__dirname, '..', '..', 'dist', 'probe', 'iptables.js');
    expect(existsSync(dist)).toBe(true); // npm test builds first; by hand: npx tsc -p tsconfig.build.json
    const child = spawn(process.execPath, ['-e', `require(${JSON.stringify(dist)}).probeIptables({ scratch: true })`], { stdio: 'ignore' });
    const mine = () => readdirSync('/var/run/netns').filter((n) => n.startsWith(`shunt-probe-${child.pid}-`));
    const t0 = Date.now();
    while (mine().length === 0 && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 2));
    expect(mine()).toHaveLength(1);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const leaked = mine();
    // A live process's scratch netns (this pid's sibling: a sleeping child) must survive.
    const live = spawn('sleep', ['30'], { stdio: 'ignore' });
    const liveName = `shunt-probe-${live.pid}-0123abcd`;
    execFileSync('ip', ['netns', 'add', liveName]);
    try {
      // Positive control: the kill really leaked it (the probe's finally never ran).
      expect(leaked).toHaveLength(1);
      await probeIptables({ scratch: true });
      expect(mine()).toEqual([]);
      expect(readdirSync('/var/run/netns')).toContain(liveName);
    } finally {
      execFileSync('ip', ['netns', 'del', liveName]);
      live.kill('SIGKILL');
      for (const n of mine()) execFileSync('ip', ['netns', 'del', n]);
    }
  }, 60_000);
});

describe('a probe interrupted mid-way (Ctrl-C or SIGTERM during start-up) removes its scratch netns', () => {
  it.each(['SIGINT', 'SIGTERM'] as const)('%s while the scratch netns exists: removed, and the process still ends by that signal', async (sig) => {
    const { spawn } = await import('node:child_process');
    const { existsSync, readdirSync } = await import('node:fs');
    const { join } = await import('node:path');
    const dist = join(__dirname, '..', '..', 'dist', 'probe', 'iptables.js');
    expect(existsSync(dist)).toBe(true); // npm test builds first; by hand: npx tsc -p tsconfig.build.json
    // No signal handler of its own: the default action must still end it.
    const child = spawn(process.execPath, ['-e', `require(${JSON.stringify(dist)}).probeIptables({ scratch: true })`], { stdio: 'ignore' });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
    const mine = () => readdirSync('/var/run/netns').filter((n) => n.startsWith(`shunt-probe-${child.pid}-`));
    try {
      const t0 = Date.now();
      while (mine().length === 0 && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 2));
      expect(mine()).toHaveLength(1);
      child.kill(sig);
      expect(await exited).toEqual({ code: null, signal: sig });
      expect(mine()).toEqual([]);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      for (const n of mine()) execFileSync('ip', ['netns', 'del', n]);
    }
  }, 60_000);
});
