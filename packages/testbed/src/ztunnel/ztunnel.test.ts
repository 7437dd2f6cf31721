// The ztunnel stand-in as a process, driven over real ZDS by an in-process ZdsServer (the harness),
// in testbed pods: the sockets ztunnel opens (ports, options) appear in the pod netns on Add and go
// on Del; a NACK carries the socket error; the outbound leg reads SO_ORIGINAL_DST and goes HBONE
// (HTTP/2 CONNECT) to the peer's 15008, whose stand-in connects to the app from the client's
// address; without an HBONE peer it passes through; DNS on localhost:15053 answers.
import * as path from 'node:path';
import { Testbed } from '../testbed';
import { ztunnelHarness, type ZtunnelHarness } from './harness';
import type { ZtunnelLogEntry } from './log';

type Conn = Extract<ZtunnelLogEntry, { event: 'conn' }>;

describe('ztunnel stand-in', () => {
  let tb: Testbed;
  let h: ZtunnelHarness;
  beforeAll(async () => {
    tb = await Testbed.create({ pods: [{ name: 'a', mesh: 'ambient' }, { name: 'b', mesh: 'ambient' }, { name: 'c' }] });
    h = await ztunnelHarness({ socketPath: path.join(tb.stateDir, 'ztunnel.sock'), logPath: path.join(tb.stateDir, 'ztunnel.log'), name: 'zt0' });
  }, 60_000);
  afterAll(async () => {
    await h?.stop();
    await tb?.dispose();
  });

  const listeners = async (pod: string): Promise<string> => (await tb.run(pod, ['ss', '-H', '-ltnu'])).stdout;
  const add = (pod: string) => {
    const p = tb.pod(pod);
    return h.add({ uid: p.uid, name: p.name, namespace: p.namespace, netnsPath: p.netnsPath });
  };

  test("Add opens ztunnel's sockets in the pod netns with its options; Del closes them", async () => {
    await add('a');
    const [l] = await h.zt.waitFor((e) => e.event === 'listening' && e.pod === 'a', { what: 'a listening' });
    expect(l).toMatchObject({
      sockets: [
        { leg: 'outbound', address: '::', port: 15001, mark: 1337, reusePort: true, transparent: true },
        { leg: 'inbound', address: '::', port: 15006, mark: 1337, reusePort: true, transparent: true },
        { leg: 'hbone', address: '::', port: 15008, mark: 1337, reusePort: true, transparent: true },
        { leg: 'dns', address: '127.0.0.1', port: 15053, mark: 1337, reusePort: true },
        { leg: 'dns', address: '::1', port: 15053, mark: 1337, reusePort: true },
        { leg: 'dns', address: '127.0.0.1', port: 15053, mark: 1337, reusePort: true, transparent: true },
        { leg: 'dns', address: '::1', port: 15053, mark: 1337, reusePort: true, transparent: true },
      ],
    });
    const ss = await listeners('a');
    for (const want of ['*:15001', '*:15006', '*:15008', '127.0.0.1:15053', '[::1]:15053']) expect(ss).toContain(want);
    expect(await listeners('c')).not.toContain('15001'); // only the netns it was handed
    await h.remove(tb.pod('a').uid);
    await h.zt.waitFor((e) => e.event === 'del' && e.pod === 'a');
    expect(await listeners('a')).not.toContain('15001');
    await add('a'); // back for the next tests
  });

  test("a workload whose sockets cannot be opened is NACKed with the socket's error", async () => {
    // The app in c already holds 15008 without SO_REUSEPORT.
    const blocker = await tb.startEchoServer('c', { port: 15008 });
    try {
      const p = tb.pod('c');
      await expect(h.add({ uid: p.uid, name: p.name, namespace: p.namespace, netnsPath: p.netnsPath })).rejects.toMatchObject({
        code: 'NACK',
        reason: expect.stringMatching(/failed to start workload proxy for .*\/c: .*EADDRINUSE/),
      });
      expect(await listeners('c')).not.toContain('15001'); // nothing half-open left behind
    } finally {
      await blocker.kill();
    }
  });

  test('outbound: SO_ORIGINAL_DST, HBONE to the peer 15008, app reached from the client address; passthrough to a non-mesh pod', async () => {
    await add('b');
    const [a, b, c] = [tb.pod('a'), tb.pod('b'), tb.pod('c')];
    await tb.startEchoServer('b', { port: 9000 });
    await tb.startEchoServer('c', { port: 9000 });
    // Minimal in-pod redirect for this test only (the backends do it for real): a's app TCP to :9000 → 15001.
    await tb.run('a', ['iptables', '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '--dport', '9000', '-m', 'mark', '!', '--mark', '1337', '-j', 'REDIRECT', '--to-ports', '15001']);
    // b: replies to the stand-in's spoofed-source connections go back to it (istio-cni's connmark + route).
    for (const argv of [
      ['iptables', '-t', 'mangle', '-A', 'OUTPUT', '-p', 'tcp', '-m', 'mark', '--mark', '1337', '-j', 'CONNMARK', '--set-mark', '0x111'],
      ['iptables', '-t', 'mangle', '-A', 'OUTPUT', '-p', 'tcp', '-m', 'connmark', '--mark', '0x111', '-m', 'mark', '!', '--mark', '1337', '-j', 'MARK', '--set-mark', '0x111'],
      ['ip', 'rule', 'add', 'fwmark', '0x111', 'lookup', '100'],
      ['ip', 'route', 'add', 'local', 'default', 'dev', 'lo', 'table', '100'],
    ])
      await tb.run('b', argv);
    expect(await tb.echo('a', b.ipv4, 9000, 'via-hbone')).toBe('via-hbone');
    const [out] = (await h.zt.waitFor((e) => e.event === 'conn' && e.leg === 'outbound' && e.pod === 'a' && e.origDst.address === b.ipv4)) as Conn[];
    expect(out).toMatchObject({ how: 'SO_ORIGINAL_DST', origDst: { address: b.ipv4, port: 9000 }, client: { address: a.ipv4 }, via: 'hbone', upstreamSource: { address: a.ipv4 } });
    expect(out!.error).toBeUndefined();
    const [hb] = (await h.zt.waitFor((e) => e.event === 'conn' && e.leg === 'hbone' && e.pod === 'b')) as Conn[];
    expect(hb).toMatchObject({ how: 'hbone-authority', origDst: { address: b.ipv4, port: 9000 }, client: { address: a.ipv4 }, local: { address: b.ipv4, port: 15008 }, upstreamSource: { address: a.ipv4 } });
    expect(hb!.error).toBeUndefined();

    expect(await tb.echo('a', c.ipv4, 9000, 'passthrough')).toBe('passthrough');
    const [pt] = (await h.zt.waitFor((e) => e.event === 'conn' && e.leg === 'outbound' && e.origDst.address === c.ipv4)) as Conn[];
    expect(pt).toMatchObject({ how: 'SO_ORIGINAL_DST', via: 'passthrough', origDst: { address: c.ipv4, port: 9000 } });
  });

  test('relay: a 4 MiB upload comes back intact after a half-close; the next connection reuses the pooled tunnel', async () => {
    const b = tb.pod('b');
    // Upload, then end (half-close); the echo server answers everything and ends too.
    const src = `const net=require('net');const crypto=require('crypto');const data=crypto.randomBytes(4*1024*1024);
      const s=net.connect(9000,process.argv[1],()=>{s.end(data);});const got=[];s.on('data',(d)=>got.push(d));
      s.on('end',()=>{const all=Buffer.concat(got);console.log(JSON.stringify({sent:data.length,got:all.length,same:all.equals(data)}));process.exit(0);});
      s.on('error',(e)=>{console.log(JSON.stringify({error:e.message}));process.exit(1);});setTimeout(()=>{console.log(JSON.stringify({error:'timeout'}));process.exit(2);},20000);`;
    const r = await tb.run('a', [process.execPath, '-e', src, b.ipv4], { timeoutMs: 30_000 });
    expect(JSON.parse(r.stdout.trim())).toEqual({ sent: 4 * 1024 * 1024, got: 4 * 1024 * 1024, same: true });
    const hbone = (): Conn[] => h.zt.entries().filter((e): e is Conn => e.event === 'conn' && e.leg === 'hbone' && e.pod === 'b' && !e.error);
    const before = hbone().length;
    expect(await tb.echo('a', b.ipv4, 9000, 'one')).toBe('one');
    expect(await tb.echo('a', b.ipv4, 9000, 'two')).toBe('two');
    await h.zt.waitFor((e) => e.event === 'conn' && e.leg === 'hbone' && e.pod === 'b', { count: before + 2 });
    const [one, two] = hbone().slice(-2);
    // One tunnel connection (same source port) carried both streams, one after the other.
    expect(two!.client).toEqual(one!.client);
  });

  test('DNS on localhost:15053 answers (REFUSED) and logs the client', async () => {
    const q = Buffer.from('123401000001000000000000076578616d706c6503636f6d0000010001', 'hex');
    const src = `const d=require('dgram').createSocket('udp4');d.on('message',m=>{console.log(m.toString('hex'));process.exit(0)});d.send(Buffer.from('${q.toString('hex')}','hex'),15053,'127.0.0.1');setTimeout(()=>process.exit(3),3000)`;
    const r = await tb.run('a', [process.execPath, '-e', src]);
    const reply = Buffer.from(r.stdout.trim(), 'hex');
    expect(reply.readUInt16BE(0)).toBe(0x1234);
    expect(reply[3]! & 0x0f).toBe(5);
    await h.zt.waitFor((e) => e.event === 'conn' && e.leg === 'dns' && e.pod === 'a' && e.client.address === '127.0.0.1');
    // The same over TCP (2-byte length prefix), on the same port.
    const tcp = `const s=require('net').connect(15053,'::1',()=>{const q=Buffer.from('${q.toString('hex')}','hex');const l=Buffer.alloc(2);l.writeUInt16BE(q.length);s.write(Buffer.concat([l,q]));});let b=Buffer.alloc(0);s.on('data',d=>{b=Buffer.concat([b,d]);if(b.length>=2&&b.length>=2+b.readUInt16BE(0)){console.log(b.subarray(2).toString('hex'));process.exit(0)}});setTimeout(()=>process.exit(3),3000)`;
    const rt = Buffer.from((await tb.run('a', [process.execPath, '-e', tcp])).stdout.trim(), 'hex');
    expect(rt.readUInt16BE(0)).toBe(0x1234);
    expect(rt[3]! & 0x0f).toBe(5);
    await h.zt.waitFor((e) => e.event === 'conn' && e.leg === 'dns' && e.pod === 'a' && e.client.address === '::1');
  });
});
