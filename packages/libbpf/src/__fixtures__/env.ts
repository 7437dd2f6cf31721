/**
 * Test environment helpers: unique names, throwaway cgroups and netns, and child
 * processes placed in a cgroup/netns before they open any socket. Everything made here
 * has a remove function the tests call in afterAll/finally.
 */
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { cgroup2Mount } from '../paths';

export const FIXTURES = __dirname;
export const REGISTER_TS = path.join(__dirname, 'register-ts.js');
export const PACKAGE_SRC = path.resolve(__dirname, '..');

/** 'shunt' + tag + short random id; ≤ 15 chars with a short tag, so usable as an ifname. */
export function runId(tag: string): string {
  return `shunt${tag}${randomBytes(3).toString('hex')}`;
}

export function makeCgroup(name: string): string {
  const dir = path.join(cgroup2Mount(), name);
  fs.mkdirSync(dir);
  return dir;
}

/** rmdir a cgroup; processes that just exited can linger a moment, so retry briefly. */
export async function removeCgroup(dir: string): Promise<void> {
  if (!fs.existsSync(dir)) return;
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      fs.rmdirSync(dir);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EBUSY') throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  fs.rmdirSync(dir);
}

export function ip(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Creates a netns with loopback up; returns its path under /var/run/netns. */
export function makeNetns(name: string): string {
  ip(['netns', 'add', name]);
  ip(['-n', name, 'link', 'set', 'lo', 'up']);
  return `/var/run/netns/${name}`;
}

export function removeNetns(name: string): void {
  if (fs.existsSync(`/var/run/netns/${name}`)) ip(['netns', 'del', name]);
}

/** Runs `ip` inside a netns via nsenter (ip netns exec would remount /sys). */
export function ipIn(netnsPath: string, args: string[]): string {
  return execFileSync('nsenter', [`--net=${netnsPath}`, 'ip', ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

export interface ChildOptions {
  cgroup?: string;
  netns?: string;
  timeoutMs?: number;
  env?: Record<string, string>;
}

/**
 * Runs `node <script> ...args` (a fixture, with TS sources requirable), first moved into
 * the cgroup and netns so every socket it opens is subject to the attached programs.
 * Resolves with its stdout parsed as JSON (the fixtures print one JSON line).
 */
export function runNode<T = unknown>(script: string, args: string[], opts: ChildOptions = {}): Promise<T> {
  const node = process.execPath;
  const argv = ['-r', REGISTER_TS, path.join(FIXTURES, script), ...args].map(shellQuote).join(' ');
  let cmd = `exec ${shellQuote(node)} ${argv}`;
  if (opts.netns) cmd = `exec nsenter --net=${shellQuote(opts.netns)} ${shellQuote(node)} ${argv}`;
  if (opts.cgroup) cmd = `echo $$ > ${shellQuote(path.join(opts.cgroup, 'cgroup.procs'))} && ${cmd}`;
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', cmd], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 20000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`${script} exited ${code ?? signal}: ${err.trim()}`));
      try {
        resolve(JSON.parse(out.trim().split('\n').pop() ?? '') as T);
      } catch {
        reject(new Error(`${script} printed no JSON: ${out} ${err}`));
      }
    });
  });
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Order of hook_counters slots in bpf/selftest/selftest.bpf.c. */
export const HOOKS = [
  'sock_ops',
  'connect4',
  'connect6',
  'getsockopt',
  'sendmsg4',
  'sendmsg6',
  'recvmsg4',
  'recvmsg6',
  'bind4',
  'bind6',
  'sk_msg',
  'sk_msg_redirected',
  'tcx_ingress',
  'tcx_egress',
  'tc_legacy',
  'sockhash_insert',
] as const;
export type Hook = (typeof HOOKS)[number];

export function readCounters(map: { lookup(k: Buffer): Buffer | null }): Record<Hook, bigint> {
  const out = {} as Record<Hook, bigint>;
  HOOKS.forEach((name, i) => {
    const key = Buffer.alloc(4);
    key.writeUInt32LE(i);
    out[name] = map.lookup(key)?.readBigUInt64LE(0) ?? 0n;
  });
  return out;
}
