// Real network namespaces: named ones under /run/netns and an unnamed one held only by a
// process (found through /proc/<pid>/ns/net), each with a 198.18.0.0/15 address.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createNetns, deleteNetns, Netlink } from '@shunt/netlink';
import { netnsCookie } from '@shunt/libbpf';
import { NetnsDiscovery, NetnsNotFoundError } from './discovery';
import { listNetnsIps } from './ips';

const run = `shunt${randomBytes(3).toString('hex')}`;
const named = [`${run}-a`, `${run}-b`, `${run}-c`];
let holder: ChildProcess | undefined;
const octet = 1 + (randomBytes(1)[0]! % 200);

// This kernel has no dummy driver: loopback carries the test address just as well.
async function addDummy(netns: string, cidr: string): Promise<void> {
  const nl = Netlink.at(netns);
  await nl.setUp('lo');
  await nl.addAddress('lo', cidr, { nodad: true });
}

beforeAll(async () => {
  const a = await createNetns(named[0]!);
  const b = await createNetns(named[1]!);
  await addDummy(a, `198.18.${octet}.1/32`);
  await addDummy(b, `198.18.${octet}.2/32`);
}, 30_000);

afterAll(async () => {
  if (holder?.pid) holder.kill('SIGKILL');
  for (const n of named) await deleteNetns(n, { ignoreMissing: true });
});

function discovery(): NetnsDiscovery {
  return new NetnsDiscovery({ listIps: listNetnsIps, readCookie: netnsCookie });
}

it('finds named netns by IP, with the cookie the BPF programs see', async () => {
  const d = discovery();
  const a = await d.resolve([`198.18.${octet}.1`]);
  expect(a.path).toBe(`/var/run/netns/${named[0]}`);
  expect(a.cookie).toBe(netnsCookie(`/run/netns/${named[0]}`).toString());
  const b = await d.resolve([`2001:db8::dead`, `198.18.${octet}.2`]);
  expect(b.path).toBe(`/var/run/netns/${named[1]}`);
  expect(b.cookie).not.toBe(a.cookie);
  // Both answers came from one scan; the second one from the cache.
  expect(d.scans).toBe(1);
});

it('finds a netns held only by a process, through /proc/<pid>/ns/net', async () => {
  // unshare makes a fresh netns; the child adds an address then waits to be killed.
  holder = spawn('unshare', ['--net', 'sh', '-c', `ip link set lo up && ip addr add 198.18.${octet}.3/32 dev lo && echo ready && exec sleep 60`], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    holder!.stdout!.once('data', () => resolve());
    holder!.once('exit', (code) => reject(new Error(`netns holder exited ${code}`)));
  });
  const d = discovery();
  const e = await d.resolve([`198.18.${octet}.3`]);
  expect(e.path).toMatch(/^\/proc\/\d+\/ns\/net$/);
  expect(await listNetnsIps(e.path)).toContain(`198.18.${octet}.3`);

  // The process goes away with its netns: the cached answer is dropped, not reused.
  holder.kill('SIGKILL');
  await new Promise((r) => holder!.once('exit', r));
  holder = undefined;
  await expect(d.resolve([`198.18.${octet}.3`])).rejects.toBeInstanceOf(NetnsNotFoundError);
});

it('rescans when a pod sandbox is recreated with the same IP', async () => {
  const d = discovery();
  const first = await d.resolve([`198.18.${octet}.2`]);
  await deleteNetns(named[1]!);
  const again = await createNetns(named[1]!);
  await addDummy(again, `198.18.${octet}.2/32`);
  const second = await d.resolve([`198.18.${octet}.2`]);
  expect(second.path).toBe(first.path);
  // The kernel may hand the new netns the old one's inode number; the cookie is never reused.
  expect(second.cookie).not.toBe(first.cookie);
  expect(d.scans).toBe(2);
});

it('a new pod costs one address listing, not one per netns on the node', async () => {
  // Scoped to this test's netns: other helpers create namespaces on this machine meanwhile.
  const d = new NetnsDiscovery({ listIps: listNetnsIps, readCookie: netnsCookie, namePrefix: run });
  await d.resolve([`198.18.${octet}.1`]);
  const before = d.listings;
  expect(before).toBeGreaterThanOrEqual(2);
  const c = await createNetns(named[2]!);
  await addDummy(c, `198.18.${octet}.4/32`);
  expect((await d.resolve([`198.18.${octet}.4`])).path).toBe(`/var/run/netns/${named[2]}`);
  expect(d.scans).toBe(2);
  expect(d.listings).toBe(before + 1);
  // The namespaces listed before are still found (from the kept listing).
  expect((await d.resolve([`198.18.${octet}.2`])).path).toBe(`/var/run/netns/${named[1]}`);
});

it('says which IP it could not find', async () => {
  await expect(discovery().resolve(['198.19.255.254'])).rejects.toThrow(/no network namespace on this node carries IP 198\.19\.255\.254/);
});
