import { decodeHello, decodeRequest, decodeResponse, encodeAck, encodeHello, encodeRequest, ZdsProtocolError } from './index';

// Bytes computed by hand from istio/ztunnel proto/zds.proto's field numbers: if a field number
// drifted, a real ztunnel would read something else, and these fail.
describe('ZDS wire format', () => {
  const hex = (b: Buffer) => b.toString('hex');
  test('requests use ztunnel field numbers', () => {
    // WorkloadRequest.add = 1 { AddWorkload.uid = 1 "u", workload_info = 2 { name=1 "n", namespace=2 "s", service_account=3 "a" } }
    expect(hex(encodeRequest({ type: 'add', uid: 'u', workloadInfo: { name: 'n', namespace: 's', serviceAccount: 'a' } }))).toBe(
      '0a' + '0e' + '0a0175' + '12' + '09' + '0a016e' + '120173' + '1a0161',
    );
    expect(hex(encodeRequest({ type: 'del', uid: 'u' }))).toBe('1203' + '120175'); // del = 2 { uid = 2 }
    expect(hex(encodeRequest({ type: 'keep', uid: 'u' }))).toBe('2a03' + '0a0175'); // keep = 5 { uid = 1 }
    expect(hex(encodeRequest({ type: 'snapshotSent' }))).toBe('1a00'); // snapshot_sent = 3
    expect(hex(encodeHello())).toBe('0801'); // version = 1 (V1)
    expect(hex(encodeAck(''))).toBe('0a00'); // ack = 1 {}
    expect(hex(encodeAck('x'))).toBe('0a03' + '0a0178'); // ack = 1 { error = 1 "x" }
  });

  test('round trips', () => {
    for (const r of [
      { type: 'add', uid: 'pod-1', workloadInfo: { name: 'a', namespace: 'b', serviceAccount: 'c' } },
      { type: 'add', uid: 'pod-2' },
      { type: 'keep', uid: 'pod-3' },
      { type: 'del', uid: 'pod-4' },
      { type: 'snapshotSent' },
    ] as const)
      expect(decodeRequest(encodeRequest(r))).toEqual(r);
    expect(decodeHello(encodeHello())).toEqual({ version: 1 });
    expect(decodeResponse(encodeAck('boom'))).toEqual({ error: 'boom' });
    expect(decodeResponse(encodeAck())).toEqual({ error: '' });
  });

  test('bad bytes are protocol errors naming what was wrong', () => {
    expect(() => decodeRequest(Buffer.alloc(0))).toThrow(new ZdsProtocolError('WorkloadRequest without a payload'));
    expect(() => decodeRequest(Buffer.from('0a00', 'hex'))).toThrow(/AddWorkload without a uid/);
    expect(() => decodeRequest(Buffer.from('0aff', 'hex'))).toThrow(/cannot decode WorkloadRequest/);
    expect(() => decodeResponse(Buffer.alloc(0))).toThrow(/without an ack/);
  });
});
