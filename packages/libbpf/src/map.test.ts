import * as fs from 'node:fs';
import * as net from 'node:net';
import { BpfError, BpfObject, bpfObjectPath, ipv4, numPossibleCpus, pad, struct, u16, u32, u64, u8, BpfMap } from './index';
import { runId } from './__fixtures__/env';

const flowKey = struct({ addr: ipv4, port: u16, proto: u8, pad: pad(1) });
const flowValue = struct({ packets: u64, bytes: u64 });
const lpmKey = struct({ prefixlen: u32, addr: ipv4 });

function u32Key(n: number): Buffer {
  return u32.encode(n);
}

describe('selftest maps: round trips through the kernel', () => {
  let obj: BpfObject;
  beforeAll(() => {
    obj = BpfObject.open(bpfObjectPath('selftest/selftest.bpf.o'));
  });
  afterAll(() => obj?.close());

  test('the object lists its maps with BTF-derived sizes and types', () => {
    const byName = Object.fromEntries(obj.maps().map((m) => [m.name, m]));
    expect(byName['test_hash']).toMatchObject({ type: 'hash', keySize: 8, valueSize: 16, maxEntries: 64 });
    expect(byName['test_hash']?.btfKeyType).toBe('struct flow_key');
    expect(byName['test_lru']).toMatchObject({ type: 'lru_hash', keySize: 4, valueSize: 8 });
    expect(byName['test_percpu']).toMatchObject({ type: 'percpu_array', keySize: 4, valueSize: 8, maxEntries: 4 });
    expect(byName['test_lpm']).toMatchObject({ type: 'lpm_trie', keySize: 8, valueSize: 4 });
    expect(byName['sock_hash']).toMatchObject({ type: 'sockhash', keySize: 16, valueSize: 8 });
  });

  test('hash: update/lookup/keys/delete and the noexist/exist flags', () => {
    const m = obj.map('test_hash').typed(flowKey, flowValue);
    const k = { addr: '198.18.0.7', port: 8080, proto: 6 };
    expect(m.lookup(k)).toBeNull();
    expect(() => m.update(k, { packets: 1n, bytes: 2n }, 'exist')).toThrow(/ENOENT.*flag is 'exist'/);
    m.update(k, { packets: 1n, bytes: 100n }, 'noexist');
    expect(m.lookup(k)).toEqual({ packets: 1n, bytes: 100n });
    expect(() => m.update(k, { packets: 9n, bytes: 9n }, 'noexist')).toThrow(BpfError);
    try {
      m.update(k, { packets: 9n, bytes: 9n }, 'noexist');
    } catch (err) {
      expect(err).toMatchObject({ code: 'EEXIST', op: 'update', target: 'map test_hash' });
    }
    m.update(k, { packets: 2n, bytes: 200n }, 'exist');
    expect(m.lookup(k)).toEqual({ packets: 2n, bytes: 200n });
    expect(m.keys()).toEqual([k]);
    // the raw key really is the C layout: addr in network order, then host-order port
    const raw = obj.map('test_hash').keys()[0];
    expect(raw?.subarray(0, 4)).toEqual(Buffer.from([198, 18, 0, 7]));
    expect(raw?.readUInt16LE(4)).toBe(8080);
    expect(m.delete(k)).toBe(true);
    expect(m.delete(k)).toBe(false);
    expect(m.keys()).toEqual([]);
  });

  test('hash: batch update, batched entries() and batch delete', () => {
    const m = obj.map('test_hash');
    const entries: Array<[Buffer, Buffer]> = [];
    for (let i = 0; i < 40; i++)
      entries.push([flowKey.encode({ addr: `198.18.1.${i}`, port: 1000 + i, proto: 17 }), flowValue.encode({ packets: BigInt(i), bytes: 0n })]);
    expect(m.updateBatch(entries)).toBe(40);
    const got = m.entries();
    expect(got).toHaveLength(40);
    const decoded = new Map(got.map(([k, v]) => [flowKey.decode(k).port, flowValue.decode(v).packets]));
    expect(decoded.get(1039)).toBe(39n);
    expect(m.deleteBatch(entries.map(([k]) => k))).toBe(40);
    expect(m.keys()).toEqual([]);
  });

  test('count(): entries counted in the addon, in chunks (grown past full buckets) or key by key', () => {
    const m = obj.map('test_hash');
    expect(m.count()).toBe(0);
    const entries: Array<[Buffer, Buffer]> = [];
    for (let i = 0; i < 50; i++)
      entries.push([flowKey.encode({ addr: `198.18.2.${i}`, port: 2000 + i, proto: 6 }), flowValue.encode({ packets: 1n, bytes: 0n })]);
    m.updateBatch(entries);
    try {
      // chunk 1 and 3: many rounds, and buckets of 2+ entries that must grow the chunk (ENOSPC).
      for (const chunk of [1, 3, 256]) expect(m.count(chunk)).toBe(50);
      m.delete(entries[7]![0]);
      expect(m.count(2)).toBe(49);
      expect(m.count(2)).toBe(m.keys().length);
    } finally {
      for (const [k] of entries) m.delete(k);
    }
    expect(m.count()).toBe(0);
    // LPM tries have no batch ops: counted key by key.
    const lpm = obj.map('test_lpm').typed(lpmKey, u32);
    lpm.update({ prefixlen: 16, addr: '198.18.0.0' }, 1);
    lpm.update({ prefixlen: 24, addr: '198.18.9.0' }, 1);
    try {
      expect(lpm.map.count()).toBe(2);
    } finally {
      lpm.delete({ prefixlen: 16, addr: '198.18.0.0' });
      lpm.delete({ prefixlen: 24, addr: '198.18.9.0' });
    }
    expect(lpm.map.count()).toBe(0);
    expect(obj.map('test_percpu').count()).toBe(4); // arrays: every index
    expect(() => m.count(0)).toThrow(/chunk must be a positive integer/);
  });

  test('LRU hash: inserting past max_entries evicts instead of failing', () => {
    const m = obj.map('test_lru').typed(u32, u64);
    for (let i = 0; i < 200; i++) m.update(i, BigInt(i * 10));
    const keys = m.keys();
    expect(keys.length).toBeGreaterThan(0);
    expect(keys.length).toBeLessThanOrEqual(obj.map('test_lru').maxEntries);
    expect(m.lookup(199)).toBe(1990n); // the newest entry survives
    for (const k of keys) m.delete(k);
    expect(m.keys()).toEqual([]);
  });

  test('per-CPU array: one value per possible CPU', () => {
    const m = obj.map('test_percpu');
    const cpus = numPossibleCpus();
    const values = Array.from({ length: cpus }, (_, i) => u64.encode(BigInt(100 + i)));
    m.update(u32Key(2), values);
    const back = m.lookupPerCpu(u32Key(2));
    expect(back?.map((b) => u64.decode(b))).toEqual(values.map((b) => u64.decode(b)));
    m.update(u32Key(3), u64.encode(7n)); // one value is written to every CPU
    expect(m.typed(u32, u64).lookupPerCpu(3)).toEqual(new Array(cpus).fill(7n));
    expect(m.keys()).toHaveLength(4); // arrays always have max_entries keys
    expect(() => m.update(u32Key(9), u64.encode(1n))).toThrow(/E2BIG|EINVAL|ENOENT/);
    expect(() => m.update(u32Key(0), [u64.encode(1n)].concat(cpus > 1 ? [] : [u64.encode(2n)]))).toThrow(
      /per-CPU values/,
    );
  });

  test('LPM trie: longest-prefix lookup, iterate, delete', () => {
    const m = obj.map('test_lpm').typed(lpmKey, u32);
    m.update({ prefixlen: 15, addr: '198.18.0.0' }, 1);
    m.update({ prefixlen: 24, addr: '198.18.5.0' }, 2);
    expect(m.lookup({ prefixlen: 32, addr: '198.18.5.9' })).toBe(2);
    expect(m.lookup({ prefixlen: 32, addr: '198.19.200.1' })).toBe(1);
    expect(m.lookup({ prefixlen: 32, addr: '10.0.0.1' })).toBeNull();
    expect(m.keys()).toHaveLength(2);
    expect(m.delete({ prefixlen: 24, addr: '198.18.5.0' })).toBe(true);
    expect(m.lookup({ prefixlen: 32, addr: '198.18.5.9' })).toBe(1);
    expect(m.delete({ prefixlen: 15, addr: '198.18.0.0' })).toBe(true);
    expect(m.keys()).toEqual([]);
  });

  test('sockhash: a socket fd goes in, its cookie comes out, then it is removed', async () => {
    const m = obj.map('sock_hash');
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
      expect(fd).toBeGreaterThan(0);
      const key = Buffer.alloc(16, 0xab);
      m.update(key, u64.encode(BigInt(fd)), 'noexist');
      const cookie = m.lookup(key);
      expect(cookie && u64.decode(cookie)).toBeGreaterThan(0n);
      expect(m.keys()).toEqual([key]);
      expect(m.delete(key)).toBe(true);
      expect(m.keys()).toEqual([]);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  test('wrong key and value sizes are refused with the map name and both sizes', () => {
    const m = obj.map('test_hash');
    expect(() => m.lookup(Buffer.alloc(3))).toThrow("lookup map test_hash: EINVAL (Invalid argument): key is 3 bytes, the map's key is 8 bytes");
    expect(() => m.update(Buffer.alloc(8), Buffer.alloc(4))).toThrow(/value is 4 bytes, the map's value is 16 bytes/);
    expect(() => m.typed(u32, flowValue)).toThrow(/key codec is 4 bytes, the map's key \(struct flow_key\) is 8 bytes/);
    expect(() => m.update(Buffer.alloc(8), Buffer.alloc(16), 'sometimes' as never)).toThrow(/unknown flag 'sometimes'/);
  });

  test('a pinned map is adopted by path with the same id, and unpin removes the file', () => {
    const dir = `/sys/fs/bpf/${runId('m')}`;
    fs.mkdirSync(dir);
    try {
      const m = obj.map('test_lru');
      m.pin(`${dir}/lru`);
      m.update(u32Key(5), u64.encode(55n));
      const adopted = BpfMap.fromPin(`${dir}/lru`);
      expect(adopted).toMatchObject({ name: 'test_lru', type: 'lru_hash', keySize: 4, valueSize: 8 });
      expect(adopted.id).toBe(m.id);
      expect(adopted.lookup(u32Key(5))).toEqual(u64.encode(55n));
      adopted.unpin();
      expect(fs.existsSync(`${dir}/lru`)).toBe(false);
      adopted.close();
      m.delete(u32Key(5));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('struct codecs', () => {
  test('encode/decode round trip and layout', () => {
    const c = struct({ a: u8, p: pad(3), b: u32, ip: ipv4 });
    expect(c.size).toBe(12);
    expect(c.offsets).toEqual({ a: 0, p: 1, b: 4, ip: 8 });
    const buf = c.encode({ a: 1, b: 0x01020304, ip: '198.18.0.1' });
    expect(c.decode(buf)).toEqual({ a: 1, b: 0x01020304, ip: '198.18.0.1' });
    expect(() => c.encode({ a: 300, b: 0, ip: '1.2.3.4' })).toThrow(/value 300/);
    expect(() => c.encode({ a: 1, b: 0, ip: 'nope' })).toThrow(/'nope' is not an IPv4 address/);
  });
});
