// `shunt cleanup` that cannot remove what it finds says so: run without CAP_NET_ADMIN (setpriv drops
// it from the bounding and inheritable sets, so the iptables binaries it runs lack it too) against a
// netns holding SHUNT_* chains of both iptables variants, it must report an error naming that netns
// and exit non-zero, and the chains are indeed still there. The same command with the capability
// then removes them, reports no error and exits 0 (the positive control: the scope is right).
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createNetns, deleteNetns } from '@shunt/netlink';
import { builtCliCommand } from '../agent/process';
import { readShuntChains } from './iptables-read';

const RUN = `shcap${randomBytes(3).toString('hex')}`;
const NETNS = `${RUN}-pod-a`;
let dir: string;
let bpffs: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'shunt-cleanup-caps-'));
  bpffs = `/sys/fs/bpf/${RUN}`;
  mkdirSync(bpffs);
  const ns = await createNetns(NETNS);
  for (const bin of ['iptables-legacy', 'iptables-nft']) {
    execFileSync('nsenter', [`--net=${ns}`, bin, '-t', 'nat', '-N', 'SHUNT_OUTPUT'], { stdio: 'pipe' });
    execFileSync('nsenter', [`--net=${ns}`, bin, '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-j', 'SHUNT_OUTPUT'], { stdio: 'pipe' });
  }
}, 60_000);

afterAll(async () => {
  await deleteNetns(NETNS, { ignoreMissing: true });
  rmSync(bpffs, { recursive: true, force: true });
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

function cleanup(prefix: string[]): { status: number | null; report: { errors: string[]; iptables: { netnsPath: string; tables: string[] }[] }; stderr: string } {
  const [node, ...cli] = builtCliCommand() as [string, ...string[]];
  const r = spawnSync(prefix[0] ?? node, [...prefix.slice(1), ...(prefix.length ? [node] : []), ...cli, 'cleanup', '--json', '--bpffs-path', bpffs, '--state-dir', path.join(dir, 'state'), '--netns-prefix', `${RUN}-pod-`], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.error) throw r.error;
  return { status: r.status, report: JSON.parse(r.stdout) as never, stderr: r.stderr };
}

/** SHUNT_* chains in the test netns, as `variant/vFamily/table/chain` (a failed read throws). */
async function chains(): Promise<string[]> {
  const found = await readShuntChains(`/run/netns/${NETNS}`);
  return found.flatMap((c) => Object.entries(c.tables).flatMap(([t, cs]) => cs.map((ch) => `${c.variant}/v${c.family}/${t}/${ch}`))).sort();
}

test('without CAP_NET_ADMIN: an error naming the netns and a non-zero exit; the chains remain', async () => {
  expect(await chains()).toEqual(['legacy/v4/nat/SHUNT_OUTPUT', 'nft/v4/nat/SHUNT_OUTPUT']);
  const r = cleanup(['setpriv', '--inh-caps=-net_admin', '--bounding-set=-net_admin', '--']);
  expect(r.status).not.toBe(0);
  expect(r.report.errors.length).toBeGreaterThan(0);
  expect(r.report.errors.join('\n')).toContain(`/run/netns/${NETNS}`);
  expect(await chains()).toEqual(['legacy/v4/nat/SHUNT_OUTPUT', 'nft/v4/nat/SHUNT_OUTPUT']);
}, 90_000);

test('with CAP_NET_ADMIN: removed, no error, exit 0', async () => {
  const r = cleanup([]);
  expect({ status: r.status, errors: r.report.errors }).toEqual({ status: 0, errors: [] });
  expect(r.report.iptables.map((s) => s.netnsPath)).toEqual([`/run/netns/${NETNS}`]);
  expect(await chains()).toEqual([]);
}, 90_000);
