import { BpfLink, BpfObject, bpfObjectPath, u32 } from './index';
import { makeCgroup, makeNetns, readCounters, removeCgroup, removeNetns, runId, runNode } from './__fixtures__/env';

interface SpliceResult {
  clientPort: number;
  serverPort: number;
  sent: string;
  echoed: string;
  echoedBytes: number;
  before: { rxPackets: number; txPackets: number };
  after: { rxPackets: number; txPackets: number };
}

const BYTES = 1 << 20;

describe('sk_msg on a sockhash: sockets in the test cgroup are spliced', () => {
  const nsName = runId('sk');
  let netns: string;
  let cgroup: string;
  let obj: BpfObject;
  const links: BpfLink[] = [];

  beforeAll(() => {
    netns = makeNetns(nsName);
    cgroup = makeCgroup(runId('sk'));
    obj = BpfObject.open(bpfObjectPath('selftest/selftest.bpf.o'));
  });

  afterAll(async () => {
    for (const l of links) l.close();
    obj?.close();
    if (cgroup) await removeCgroup(cgroup);
    removeNetns(nsName);
  });

  test('without splicing, the transfer shows up on loopback (control)', async () => {
    const r = await runNode<SpliceResult>('splice.js', ['18081', String(BYTES)], { cgroup, netns });
    expect(r.echoed).toBe(r.sent);
    expect(r.after.txPackets - r.before.txPackets).toBeGreaterThan(4);
  });

  test('with sockops + sk_msg attached, data flows while loopback counters stay flat', async () => {
    const port = 18082;
    obj.map('splice_port').update(u32.encode(0), u32.encode(port));
    links.push(obj.program('selftest_sockops').attachCgroup(cgroup));
    const skmsg = obj.program('selftest_sk_msg').attachSkMsg(obj.map('sock_hash'));
    links.push(skmsg);
    expect(skmsg.info()).toMatchObject({ type: 'sockmap', attachType: 'sk_msg_verdict' });

    const counters = obj.map('hook_counters');
    const before = readCounters(counters);
    const r = await runNode<SpliceResult>('splice.js', [String(port), String(BYTES)], { cgroup, netns });
    const after = readCounters(counters);

    expect(r.echoedBytes).toBe(BYTES);
    expect(r.echoed).toBe(r.sent);
    expect(after.sockhash_insert - before.sockhash_insert).toBe(2n); // both ends
    expect(after.sk_msg_redirected).toBeGreaterThan(before.sk_msg_redirected);
    expect({ tx: r.after.txPackets - r.before.txPackets, rx: r.after.rxPackets - r.before.rxPackets }).toEqual({
      tx: 0,
      rx: 0,
    });

    // The port fields, as each context presents them (raw u32 read from the map):
    // bpf_sock_ops and sk_msg_md both give local_port in host order and remote_port as
    // the network-order port in the upper 16 bits.
    const samples = obj.map('port_samples');
    const sockops = samples.lookup(u32.encode(0));
    const skmsgSample = samples.lookup(u32.encode(1));
    expect(sockops && skmsgSample).toBeTruthy();
    for (const [ctx, s] of [
      ['bpf_sock_ops', sockops],
      ['sk_msg_md', skmsgSample],
    ] as const) {
      const raw = s as Buffer;
      expect({ ctx, localPort: raw.readUInt32LE(0) }).toEqual({ ctx, localPort: r.clientPort });
      expect({ ctx, remoteUpper16NetworkOrder: raw.readUInt16BE(6), lower16: raw.readUInt16LE(4) }).toEqual({
        ctx,
        remoteUpper16NetworkOrder: r.serverPort,
        lower16: 0,
      });
    }
    for (const l of links.splice(0)) l.detach();
  });
});
