/**
 * A throwaway kernel sandbox for this package's datapath tests: network namespaces joined by
 * veths (198.18.0.0/15 and 2001:db8::/32 only), a cgroup v2 directory the programs attach to,
 * a private bpffs pin root, and helpers that start processes inside a netns + the cgroup
 * with a chosen uid. dispose() removes everything it made, also after failures.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { cgroup2Mount } from '@shunt/libbpf';
import type { Logger, NodeCapabilities, NodeContext } from '@shunt/core';

export const SCRIPTS = path.join(__dirname, 'scripts');

export interface Netns {
  name: string;
  path: string;
}

function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'utf8', input, timeout: 20_000, stdio: ['pipe', 'pipe', 'pipe'] });
}

export const silentLog: Logger = { debug() {}, info() {}, warn() {}, error() {} };

export class Sandbox {
  readonly id: string;
  readonly cgroupDir: string;
  readonly bpffsRoot: string;
  readonly tmp: string;
  private readonly netnses: Netns[] = [];
  private readonly children = new Set<ChildProcess>();

  constructor() {
    // Short: interface names are limited to 15 characters.
    this.id = `shunt${randomBytes(3).toString('hex')}`;
    const cg = cgroup2Mount();
    if (!cg) throw new Error('sandbox: no cgroup2 mount in /proc/mounts');
    this.cgroupDir = path.join(cg, this.id);
    fs.mkdirSync(this.cgroupDir);
    this.bpffsRoot = path.join('/sys/fs/bpf', this.id);
    fs.mkdirSync(this.bpffsRoot);
    this.tmp = fs.mkdtempSync(path.join(os.tmpdir(), `${this.id}-`));
  }

  node(): NodeContext {
    return {
      nodeName: this.id,
      profile: 'istio-sidecar',
      caps: {} as NodeCapabilities,
      cgroupRoot: this.cgroupDir,
      bpffsRoot: this.bpffsRoot,
      log: silentLog,
    };
  }

  addNetns(suffix: string): Netns {
    const name = `${this.id}-${suffix}`;
    sh('ip', ['netns', 'add', name]);
    const ns = { name, path: `/var/run/netns/${name}` };
    this.netnses.push(ns);
    this.inNs(ns, 'ip', ['link', 'set', 'lo', 'up']);
    return ns;
  }

  /** Joins two netns with a veth and gives each end the listed addresses. */
  link(a: Netns, aAddrs: string[], b: Netns, bAddrs: string[], tag: string): void {
    const ea = `${this.id}${tag}a`;
    const eb = `${this.id}${tag}b`;
    sh('ip', ['link', 'add', ea, 'netns', a.name, 'type', 'veth', 'peer', 'name', eb, 'netns', b.name]);
    for (const [ns, dev, addrs] of [
      [a, ea, aAddrs],
      [b, eb, bAddrs],
    ] as const) {
      for (const addr of addrs) this.inNs(ns, 'ip', ['addr', 'add', addr, 'dev', dev, ...(addr.includes(':') ? ['nodad'] : [])]);
      this.inNs(ns, 'ip', ['link', 'set', dev, 'up']);
    }
  }

  inNs(ns: Netns, cmd: string, args: string[], input?: string): string {
    return sh('nsenter', [`--net=${ns.path}`, '--', cmd, ...args], input);
  }

  /** Packets the netns' loopback has received so far. */
  loopbackPackets(ns: Netns): number {
    const out = JSON.parse(this.inNs(ns, 'ip', ['-s', '-j', 'link', 'show', 'lo'])) as Array<{
      stats64: { rx: { packets: number } };
    }>;
    return out[0]?.stats64.rx.packets ?? 0;
  }

  /**
   * Command line that runs argv in netns `ns`, as `uid`, inside the sandbox cgroup (or not).
   * The shell moves itself into the cgroup before exec, so the very first syscall of the
   * program is already under the attached programs.
   */
  private wrap(ns: Netns, uid: number, inCgroup: boolean, argv: string[]): string[] {
    const quoted = argv.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    const join = inCgroup ? `echo $$ > '${this.cgroupDir}/cgroup.procs' && ` : '';
    const drop = uid === 0 ? '' : `setpriv --reuid=${uid} --regid=${uid} --clear-groups `;
    return ['sh', '-c', `${join}exec nsenter --net='${ns.path}' -- ${drop}${quoted}`];
  }

  /** Starts a long-running helper; resolves once it printed its first line ("ready ..."). */
  async start(ns: Netns, uid: number, script: string, args: string[], opts: { inCgroup?: boolean } = {}): Promise<Helper> {
    return this.startArgv(ns, uid, [process.execPath, path.join(SCRIPTS, script), ...args], opts);
  }

  /** start() for any program; its stdin is a pipe (Helper.send) when `stdin` is set. */
  async startArgv(ns: Netns, uid: number, argv: string[], opts: { inCgroup?: boolean; stdin?: boolean } = {}): Promise<Helper> {
    const [cmd, ...rest] = this.wrap(ns, uid, opts.inCgroup ?? true, argv);
    const child = spawn(cmd as string, rest, { stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    const helper = new Helper(child);
    await helper.ready();
    return helper;
  }

  /** Runs a helper to completion and returns its stdout (bounded by a timeout). */
  run(ns: Netns, uid: number, script: string, args: string[], opts: { inCgroup?: boolean; timeoutMs?: number } = {}): Promise<string> {
    const [cmd, ...rest] = this.wrap(ns, uid, opts.inCgroup ?? true, [process.execPath, path.join(SCRIPTS, script), ...args]);
    return this.runArgv(cmd as string, rest, opts.timeoutMs ?? 15_000);
  }

  runCmd(ns: Netns, uid: number, argv: string[], opts: { inCgroup?: boolean; timeoutMs?: number } = {}): Promise<string> {
    const [cmd, ...rest] = this.wrap(ns, uid, opts.inCgroup ?? true, argv);
    return this.runArgv(cmd as string, rest, opts.timeoutMs ?? 15_000);
  }

  private runArgv(cmd: string, args: string[], timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      this.children.add(child);
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        this.children.delete(child);
        if (code === 0) resolve(out);
        else reject(new Error(`${args.join(' ')} exited ${code ?? signal}: ${err.trim()} ${out.trim()}`));
      });
    });
  }

  async dispose(): Promise<void> {
    for (const c of this.children) c.kill('SIGKILL');
    const deadline = Date.now() + 5000;
    while (this.children.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const ns of this.netnses.reverse()) {
      try {
        sh('ip', ['netns', 'del', ns.name]);
      } catch {
        /* already gone */
      }
    }
    fs.rmSync(this.bpffsRoot, { recursive: true, force: true });
    fs.rmSync(this.tmp, { recursive: true, force: true });
    // A cgroup can only be removed once its processes are gone; retry briefly.
    for (let i = 0; i < 50 && fs.existsSync(this.cgroupDir); i++) {
      try {
        fs.rmdirSync(this.cgroupDir);
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }
}

/** A running helper script: its stdout lines parsed as JSON events. */
export class Helper {
  readonly events: Array<Record<string, unknown>> = [];
  private buf = '';
  private readyLine: Promise<void>;

  constructor(readonly child: ChildProcess) {
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    this.readyLine = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`helper not ready after 10s: ${stderr}`)), 10_000);
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`helper exited ${code} before ready: ${stderr}`));
      });
      child.stdout?.on('data', (d: Buffer) => {
        this.buf += d.toString();
        let nl: number;
        while ((nl = this.buf.indexOf('\n')) >= 0) {
          const line = this.buf.slice(0, nl);
          this.buf = this.buf.slice(nl + 1);
          const ev = JSON.parse(line) as Record<string, unknown>;
          if (ev.event === 'ready') {
            clearTimeout(timer);
            resolve();
          } else this.events.push(ev);
        }
      });
    });
  }

  ready(): Promise<void> {
    return this.readyLine;
  }

  send(line: string): void {
    if (!this.child.stdin) throw new Error('helper was started without a stdin pipe');
    this.child.stdin.write(line + '\n');
  }

  /** The event at position `index` once it has arrived (bounded by timeoutMs). */
  async event(index: number, timeoutMs = 5000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    while (this.events.length <= index) {
      if (Date.now() > deadline) throw new Error(`helper: no event #${index} after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 1));
    }
    return this.events[index] as Record<string, unknown>;
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }
}
