/**
 * Why guarded splicing ('auto') is opt-in, shown deterministically on the real kernel through the
 * testbed's sidecars (Node proxy on IPv4). When the guard moves a flow to TCP, the receiving socket
 * holds the older bytes in its psock queue (spliced) and the newer ones in its TCP receive queue,
 * and one recvmsg returns from one queue only (tcp_bpf_recvmsg serves the psock queue first and
 * returns). A reader that takes "short read + EPOLLRDHUP" as end of stream (HAProxy 2.6, and any
 * epoll app doing the same; apps' own sockets are spliced too) loses the TCP-queued tail; a reader
 * that reads until EAGAIN and ends only when read() returns 0 (Envoy, libuv/Node, Go) gets it all.
 *
 * Determinism: the server app waits without reading until the sender's FIN is queued, so both
 * queues are full before its first read; the guard's cap is small (64 KiB, paced 16 KiB writes)
 * so the switch to TCP lands after the first few messages and the TCP part fits the receive buffer.
 * Control: the same reader with splicing off ('none', the default) gets every byte.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { APP_UID, Testbed } from '@shunt/testbed';
import type { NodeCapabilities, NodeContext } from '@shunt/core';
import { SockopsBackend } from './backend';
import { SCRIPTS, silentLog } from './test-support/sandbox';
import { interpretedMeshPod } from './test-support/mesh';

const KiB = 1 << 10;
const PORT = 9500;
const MSGS = 8;
const MSG = 16 * KiB;
const GUARD = { queueCap: 64 * KiB, smallQueue: 16 * KiB };
const PY = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface ReadResult {
  policy: 'rdhup' | 'drain';
  bytes: number;
  reads: number[];
  bad: number | null;
  rdhupFirst: boolean;
}

function nodeContext(tb: Testbed, bpffsRoot: string): NodeContext {
  return { nodeName: 'node0', profile: 'istio-sidecar', caps: {} as NodeCapabilities, cgroupRoot: tb.node('node0').cgroupPath, bpffsRoot, log: silentLog };
}

describe('splice auto: the short-read hazard (why auto is opt-in)', () => {
  let tb: Testbed;
  let backend: SockopsBackend | undefined;
  let bpffsRoot = '';

  beforeAll(async () => {
    tb = await Testbed.create({ ipv6Proxy: 'off', ipv4Proxy: 'node', pods: [{ name: 'client', mesh: 'sidecar' }, { name: 'server', mesh: 'sidecar' }] });
    bpffsRoot = `/sys/fs/bpf/${tb.prefix}-shortread`;
    fs.mkdirSync(bpffsRoot, { recursive: true });
  }, 60_000);

  afterAll(async () => {
    try {
      await backend?.stop({ cleanup: true }).catch(() => undefined);
    } finally {
      if (bpffsRoot) fs.rmSync(bpffsRoot, { recursive: true, force: true });
      await tb?.dispose();
    }
  });

  async function useBackend(splice: 'auto' | 'none'): Promise<SockopsBackend> {
    await backend?.stop({ cleanup: false });
    backend = new SockopsBackend({ splice, guard: GUARD });
    await backend.start(nodeContext(tb, bpffsRoot));
    for (const name of ['client', 'server']) await backend.enroll(interpretedMeshPod(tb, name));
    return backend;
  }

  /** One connection per policy, in order; the reader's result for each. */
  async function readWith(policies: ReadResult['policy'][]): Promise<{ reads: ReadResult[]; sent: { sent: number; error?: string }[] }> {
    const reader = tb.exec('server', [PY, path.join(SCRIPTS, 'short-read-reader.py'), String(PORT), policies.join(',')], { uid: APP_UID });
    try {
      await tb.waitListening('server', [PORT], { watch: reader });
      const sent: { sent: number; error?: string }[] = [];
      for (let i = 0; i < policies.length; i++) {
        const r = await tb.run('client', [PY, path.join(SCRIPTS, 'paced-sender.py'), tb.pod('server').ipv4, String(PORT), String(MSGS), String(MSG), '30'], {
          uid: APP_UID,
          timeoutMs: 30_000,
        });
        sent.push(JSON.parse(r.stdout) as { sent: number; error?: string });
      }
      const lines = () => reader.stdoutText().split('\n').filter((l) => l.startsWith('{"policy"'));
      for (let i = 0; i < 200 && lines().length < policies.length; i++) await sleep(50);
      return { reads: lines().map((l) => JSON.parse(l) as ReadResult), sent };
    } finally {
      await reader.kill();
    }
  }

  it('after a guard switch to TCP, a short-read+RDHUP reader loses the tail; a read-until-EOF reader gets every byte', async () => {
    const b = await useBackend('auto');
    const c0 = (await b.observe()).counters;
    const { reads, sent } = await readWith(['rdhup', 'drain']);
    const c1 = (await b.observe()).counters;
    const d = (k: string) => (c1[k] ?? 0) - (c0[k] ?? 0);
    const total = MSGS * MSG;
    expect(sent).toEqual([{ sent: total }, { sent: total }]);
    // Both flows were split: spliced first, then moved to TCP by the queue cap.
    expect(d('splice_bytes')).toBeGreaterThan(0);
    expect(d('splice_to_tcp_queue')).toBeGreaterThanOrEqual(2);
    const [naive, drain] = reads;
    // Every byte and the FIN were queued before the first read, in both cases.
    expect(naive).toMatchObject({ policy: 'rdhup', rdhupFirst: true, bad: null });
    expect(drain).toMatchObject({ policy: 'drain', rdhupFirst: true, bad: null, bytes: total });
    // The naive reader's one read came from the psock queue only (at most the cap), then it stopped.
    expect(naive!.reads).toHaveLength(1);
    expect(naive!.bytes).toBeGreaterThan(0);
    expect(naive!.bytes).toBeLessThanOrEqual(GUARD.queueCap);
    // The careful reader needed more than one read for the same bytes: the two queues.
    expect(drain!.reads.length).toBeGreaterThanOrEqual(2);
    expect(drain!.reads[0]).toBeLessThanOrEqual(GUARD.queueCap);
  }, 90_000);

  it('control: with splicing off (the default) the same short-read+RDHUP reader gets every byte', async () => {
    const b = await useBackend('none');
    expect((await b.observe()).nodeDetail).toMatchObject({ splice: 'none' });
    const { reads, sent } = await readWith(['rdhup']);
    expect(sent).toEqual([{ sent: MSGS * MSG }]);
    expect(reads).toEqual([expect.objectContaining({ policy: 'rdhup', rdhupFirst: true, bad: null, bytes: MSGS * MSG })]);
  }, 90_000);
});
