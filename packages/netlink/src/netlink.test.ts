// Runs against the real kernel in throwaway network namespaces named shunt-nl-<runid>-*.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createNetns, deleteNetns, listNetns, Netlink, NetlinkError, runCommand } from './index';

const runId = randomBytes(3).toString('hex');
const nsA = `shunt-nl-${runId}-a`;
const nsB = `shunt-nl-${runId}-b`;
let a: Netlink;
let b: Netlink;

beforeAll(async () => {
  a = Netlink.at(await createNetns(nsA));
  b = Netlink.at(await createNetns(nsB));
});

afterAll(async () => {
  await deleteNetns(nsA, { ignoreMissing: true });
  await deleteNetns(nsB, { ignoreMissing: true });
});

test('netns are listed and their paths exist', async () => {
  const names = await listNetns();
  expect(names).toEqual(expect.arrayContaining([nsA, nsB]));
  expect(existsSync(a.netns!)).toBe(true);
});

test('bridge, veth across netns, addresses, up, master', async () => {
  await a.setUp('lo');
  await b.setUp('lo');
  await a.addBridge('br0');
  await a.addVeth('vh0', 'eth0', { peerNetns: b.netns! });
  await a.setMaster('vh0', 'br0');
  await a.setUp('br0');
  await a.setUp('vh0');
  await b.setUp('eth0');
  await a.addAddress('br0', '198.18.254.1/24');
  await a.addAddress('br0', '2001:db8:fe::1/64');
  await b.addAddress('eth0', '198.18.254.2/24');
  await b.addAddress('eth0', '2001:db8:fe::2/64');

  const vh0 = await a.link('vh0', { details: true });
  expect(vh0.master).toBe('br0');
  expect(vh0.kind).toBe('veth');
  expect(vh0.up).toBe(true);
  expect((await a.link('br0', { details: true })).kind).toBe('bridge');
  // The peer was created straight in B, never in A.
  expect(await a.findLink('eth0')).toBeUndefined();
  expect((await b.link('eth0')).up).toBe(true);

  const addrs = await b.addresses({ dev: 'eth0' });
  expect(addrs.map((x) => x.cidr)).toEqual(expect.arrayContaining(['198.18.254.2/24', '2001:db8:fe::2/64']));
  expect((await b.addresses({ family: 6, dev: 'eth0' })).every((x) => x.family === 6)).toBe(true);
});

test('routes: default via, local default in a table, delete', async () => {
  await b.addRoute({ dst: 'default', via: '198.18.254.1' });
  await b.addRoute({ dst: 'default', via: '2001:db8:fe::1', family: 6 });
  const v4 = await b.routes();
  expect(v4).toEqual(expect.arrayContaining([expect.objectContaining({ dst: 'default', via: '198.18.254.1', dev: 'eth0' })]));
  const v6 = await b.routes({ family: 6 });
  expect(v6.some((r) => r.dst === 'default' && r.via === '2001:db8:fe::1')).toBe(true);

  // The TPROXY pattern: everything marked goes to a table whose default route is local.
  await b.addRoute({ type: 'local', dst: 'default', dev: 'lo', table: 133 });
  const t133 = await b.routes({ table: 133 });
  expect(t133).toEqual([expect.objectContaining({ type: 'local', dst: 'default', dev: 'lo', table: '133' })]);
  await b.replaceRoute({ type: 'local', dst: 'default', dev: 'lo', table: 133 });
  await b.deleteRoute({ type: 'local', dst: 'default', dev: 'lo', table: 133 });
  expect(await b.routes({ table: 133 })).toEqual([]);
  await b.deleteRoute({ type: 'local', dst: 'default', dev: 'lo', table: 133 }, { ignoreMissing: true });
});

test('policy rules: fwmark lookup add, find, delete', async () => {
  const spec = { fwmark: 0x539, fwmask: 0xfff, table: 133, priority: 32000 };
  expect(await b.hasRule(spec)).toBe(false);
  await b.addRule(spec);
  await b.addRule({ ...spec, family: 6 });
  const rules = await b.rules();
  expect(rules).toEqual(expect.arrayContaining([expect.objectContaining({ priority: 32000, fwmark: 0x539, fwmask: 0xfff, table: '133' })]));
  expect(await b.hasRule(spec)).toBe(true);
  expect(await b.hasRule({ ...spec, family: 6 })).toBe(true);
  await b.deleteRule(spec);
  await b.deleteRule({ ...spec, family: 6 });
  expect(await b.hasRule(spec)).toBe(false);
});

test('sysctl writes stay inside the netns', async () => {
  const before = await Netlink.current().getSysctl('net.ipv4.tcp_tw_reuse');
  await b.setSysctl('net.ipv4.tcp_tw_reuse', 1);
  await a.setSysctl('net.ipv4.tcp_tw_reuse', 0);
  expect(await b.getSysctl('net.ipv4.tcp_tw_reuse')).toBe('1');
  expect(await a.getSysctl('net.ipv4.tcp_tw_reuse')).toBe('0');
  expect(await Netlink.current().getSysctl('net.ipv4.tcp_tw_reuse')).toBe(before);
  await expect(b.setSysctl('net.ipv4.x; rm -rf /', 1)).rejects.toThrow(/invalid sysctl key/);
});

test('stats64 counters move with real traffic', async () => {
  const before = (await b.link('eth0', { stats: true })).stats!;
  const beforeBr = (await a.link('br0', { stats: true })).stats!;
  // A SYN to a closed port on the bridge address comes back as RST: real packets both ways.
  await runCommand(['curl', '-s', '--max-time', '3', 'http://198.18.254.1:9/'], { netns: b.netns! }).catch(() => undefined);
  const after = (await b.link('eth0', { stats: true })).stats!;
  const afterBr = (await a.link('br0', { stats: true })).stats!;
  expect(after.tx.packets).toBeGreaterThan(before.tx.packets);
  expect(after.rx.packets).toBeGreaterThan(before.rx.packets);
  expect(afterBr.rx.packets).toBeGreaterThan(beforeBr.rx.packets);
});

test('errors carry the command and stderr', async () => {
  const err = await b.setUp('nosuchdev0').catch((e: unknown) => e);
  expect(err).toBeInstanceOf(NetlinkError);
  const ne = err as NetlinkError;
  expect(ne.command).toEqual(expect.arrayContaining(['ip', 'link', 'set', 'dev', 'nosuchdev0', 'up']));
  expect(ne.command[0]).toBe('nsenter');
  expect(ne.netns).toBe(b.netns);
  expect(ne.stderr).toMatch(/nosuchdev0/);
  expect(ne.notFound).toBe(true);
  expect(ne.message).toMatch(/ip link set dev nosuchdev0 up/);
  const dup = await a.addBridge('br0').catch((e: unknown) => e);
  expect((dup as NetlinkError).exists).toBe(true);
  expect(() => Netlink.at('relative/path')).toThrow(/absolute/);
  await expect(a.addBridge('this-name-is-way-too-long')).rejects.toThrow(/invalid interface name/);
});

test('moving a link into another netns with a new name, and deleting links', async () => {
  await a.addVeth('mv0', 'mv1');
  await a.moveToNetns('mv1', b.netns!, { newName: 'moved0' });
  expect(await a.findLink('mv1')).toBeUndefined();
  expect(await b.findLink('moved0')).toBeDefined();
  await a.deleteLink('mv0');
  expect(await b.findLink('moved0')).toBeUndefined();
  await a.deleteLink('mv0', { ignoreMissing: true });
});

test('deleteNetns removes the netns and is idempotent with ignoreMissing', async () => {
  const name = `shunt-nl-${runId}-c`;
  await createNetns(name);
  await expect(createNetns(name)).rejects.toBeInstanceOf(NetlinkError);
  await deleteNetns(name);
  expect(await listNetns()).not.toContain(name);
  await deleteNetns(name, { ignoreMissing: true });
});
