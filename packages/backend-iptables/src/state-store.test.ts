// The record files: names safe for any uid, atomic replacement, validation naming the bad field.

import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type PodRecord, RECORD_FORMAT, recordFileName, StateStore, validateRecord } from './state-store';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'shunt-ipt-store-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function record(uid: string, over: Partial<PodRecord> = {}): PodRecord {
  return {
    format: RECORD_FORMAT,
    pod: { uid, namespace: 'default', name: `pod-${uid}` },
    netnsPath: '/run/netns/x',
    netns: { dev: 4, inode: 4026532300, cookie: '4097' },
    variant: 'nft',
    families: [4, 6],
    policyRouting: true,
    tproxyMark: 1337,
    tproxyTable: 133,
    pending: false,
    fingerprint: 'ipt1:0123456789abcdef',
    updatedAt: '2025-01-01T00:00:00.000Z',
    ...over,
  };
}

test('file names: uuids unchanged, anything else percent-encoded, no path escapes', () => {
  expect(recordFileName('0b7c5e2a-51f6-4c1e-9a53-1d2f3e4a5b6c')).toBe('0b7c5e2a-51f6-4c1e-9a53-1d2f3e4a5b6c.json');
  expect(recordFileName('../etc/x')).toBe('%2e%2e%2fetc%2fx.json');
  expect(() => recordFileName('')).toThrow(/uid is empty/);
});

test('write replaces atomically, list reads back, remove deletes; nothing else is left behind', async () => {
  const store = new StateStore(path.join(dir, 'nested', 'iptables'));
  await store.write(record('a'));
  await store.write(record('a', { pending: true, families: [4] }));
  await store.write(record('b/c'));
  const { records, invalid } = await store.list();
  expect(invalid).toEqual([]);
  expect(records.map((r) => [r.pod.uid, r.pending, r.families])).toEqual([
    ['a', true, [4]],
    ['b/c', false, [4, 6]],
  ]);
  expect(readdirSync(store.dir).sort()).toEqual(['a.json', 'b%2fc.json']);
  await store.remove('a');
  await store.remove('b/c');
  await store.remove('never-written');
  await store.removeIfEmpty();
  expect(readdirSync(path.join(dir, 'nested'))).toEqual([]);
});

test('invalid files are listed with the reason, valid ones still read; temp files are skipped', async () => {
  const store = new StateStore(dir);
  await store.write(record('good'));
  writeFileSync(path.join(dir, 'trunc.json'), '{"format":');
  writeFileSync(path.join(dir, 'old.json'), JSON.stringify({ ...record('old'), format: 'shunt-iptables-pod/0' }));
  writeFileSync(path.join(dir, 'moved.json'), JSON.stringify(record('elsewhere')));
  writeFileSync(path.join(dir, 'good.json.tmp-999999999-abcd'), 'partial');
  const { records, invalid } = await store.list();
  expect(records.map((r) => r.pod.uid)).toEqual(['good']);
  expect(invalid.map((i) => [path.basename(i.file), i.error])).toEqual([
    ['moved.json', expect.stringMatching(/pod\.uid="elsewhere" does not match the file name/)],
    ['old.json', 'format="shunt-iptables-pod/0" is not valid'],
    ['trunc.json', expect.stringMatching(/JSON/)],
  ]);
  expect(await store.removeStaleTemps()).toEqual(['good.json.tmp-999999999-abcd']);
});

test('validation names the first bad field and value', () => {
  expect(() => validateRecord({ ...record('x'), variant: 'iptables' })).toThrow('variant="iptables" is not valid');
  expect(() => validateRecord({ ...record('x'), families: [] })).toThrow('families=[] is not valid');
  expect(() => validateRecord({ ...record('x'), netns: { dev: 1, inode: 2, cookie: 'abc' } })).toThrow('netns.cookie="abc" is not valid');
  expect(() => validateRecord({ ...record('x'), netnsPath: 'relative' })).toThrow('netnsPath="relative" is not valid');
});

test('records are fsync\'ed on a disk-backed state dir, not on tmpfs; a directory removed meanwhile is made again', async () => {
  const probe = await import('node:fs/promises').then((fsp) => fsp.open(path.join(dir, 'probe'), 'w'));
  const proto = Object.getPrototypeOf(probe) as { sync: () => Promise<void> };
  await probe.close();
  const sync = jest.spyOn(proto, 'sync');
  const shm = '/dev/shm';
  const tmpfsDir = mkdtempSync(path.join(shm, 'shunt-ipt-store-'));
  try {
    const { statfsSync } = await import('node:fs');
    const onDisk = statfsSync(dir).type !== 0x01021994;
    await new StateStore(path.join(dir, 'disk')).write(record('a'));
    expect(sync).toHaveBeenCalledTimes(onDisk ? 1 : 0);
    sync.mockClear();
    const store = new StateStore(path.join(tmpfsDir, 'iptables'));
    await store.write(record('b'));
    expect(sync).not.toHaveBeenCalled();
    rmSync(path.join(tmpfsDir, 'iptables'), { recursive: true, force: true });
    await store.write(record('c'));
    expect((await store.list()).records.map((r) => r.pod.uid)).toEqual(['c']);
  } finally {
    sync.mockRestore();
    rmSync(tmpfsDir, { recursive: true, force: true });
  }
});
