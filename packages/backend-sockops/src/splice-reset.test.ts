import type { BpfMap, TcpSocketId } from '@shunt/libbpf';
import { RESET_EVENT_BYTES, SpliceResetter, decodeResetEvent } from './splice-reset';
import { silentLog } from './test-support/sandbox';

/** struct shunt_splice_reset as splice_close.bpf.c writes it (little-endian host). */
function sample(o: { netns: bigint; peerNetns: bigint; family?: number; local?: number[]; remote?: number[]; lport?: number; rport?: number }): Buffer {
  const b = Buffer.alloc(RESET_EVENT_BYTES);
  const v4 = (ip: number[]) => Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...ip]);
  b.writeBigUInt64LE(o.netns, 0);
  v4(o.local ?? [127, 0, 0, 1]).copy(b, 8);
  v4(o.remote ?? [127, 0, 0, 1]).copy(b, 24);
  b.writeUInt16LE(o.lport ?? 15001, 40);
  b.writeUInt16LE(o.rport ?? 40000, 42);
  b.writeBigUInt64LE(o.netns, 48);
  b.writeBigUInt64LE(11n, 56);
  b.writeBigUInt64LE(o.peerNetns, 64);
  b.writeBigUInt64LE(12n, 72);
  b.writeUInt32LE(o.family ?? 2, 80);
  b.writeUInt32LE(4096, 84);
  b.writeUInt32LE(1, 88);
  return b;
}

function resetter(paths: Record<string, string>, destroy: (ns: string, id: TcpSocketId) => boolean) {
  return new SpliceResetter({ map: {} as BpfMap, netnsPathOf: (c) => paths[c.toString()], log: silentLog, destroy });
}

describe('SpliceResetter', () => {
  it('decodes the kernel record', () => {
    const ev = decodeResetEvent(sample({ netns: 7n, peerNetns: 8n, local: [127, 0, 0, 1], remote: [127, 0, 0, 2], lport: 15001, rport: 40000 }));
    expect(ev).toMatchObject({ family: 4, localPort: 15001, remotePort: 40000, netns: 7n, cookie: 11n, peerNetns: 8n, peerCookie: 12n, unread: 4096, state: 1 });
    expect([...ev.local.subarray(12)]).toEqual([127, 0, 0, 1]);
    expect([...ev.remote.subarray(12)]).toEqual([127, 0, 0, 2]);
    expect(() => decodeResetEvent(Buffer.alloc(10))).toThrow('sample of 10 bytes');
    const bad = sample({ netns: 7n, peerNetns: 0n, family: 99 });
    expect(() => decodeResetEvent(bad)).toThrow('unknown address family 99');
  });

  it('destroys the receiver first, then the sender by the reversed tuple in its own netns', () => {
    const calls: Array<[string, TcpSocketId]> = [];
    const r = resetter({ '7': '/ns/a', '8': '/ns/b' }, (ns, id) => (calls.push([ns, id]), ns === '/ns/a'));
    r.onSamples([sample({ netns: 7n, peerNetns: 8n, lport: 15001, rport: 40000 })]);
    expect(calls.map(([ns, id]) => [ns, id.localPort, id.remotePort, id.cookie])).toEqual([
      ['/ns/a', 15001, 40000, 11n],
      ['/ns/b', 40000, 15001, 12n],
    ]);
    expect(r.stats).toEqual({ events: 1, receiversDestroyed: 1, sendersDestroyed: 0, gone: 0, unknownNetns: 0, errors: 0 });
  });

  it('counts an unknown netns and a failing destroy without throwing (it runs on the event loop)', () => {
    const r = resetter({ '7': '/ns/a' }, () => {
      throw new Error('EPERM');
    });
    expect(() => r.onSamples([sample({ netns: 9n, peerNetns: 0n }), sample({ netns: 7n, peerNetns: 0n }), Buffer.alloc(3)])).not.toThrow();
    expect(r.stats).toMatchObject({ events: 2, unknownNetns: 1, errors: 2 });
  });
});
