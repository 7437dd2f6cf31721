/**
 * One receive queue per spliced socket, shown deterministically on the real kernel through the
 * testbed's sidecars (Node proxy on IPv4), with the default splice setting ('auto').
 *
 * When the guard moves a flow to TCP, the receiving socket already holds the older, spliced bytes
 * in its psock queue. Without the sk_skb verdict (redir.bpf.c shunt_splice_verdict) the newer bytes
 * would sit in its TCP receive queue, and one recvmsg returns from one queue only: a reader that
 * takes "short read + EPOLLRDHUP" as end of stream (HAProxy 2.6, and any epoll app doing the same;
 * apps' own sockets are spliced too) loses the TCP-queued tail. With the verdict, TCP-path skbs go
 * into the psock queue behind the spliced bytes: one read returns everything, EOF comes last.
 *
 * Determinism: the server app waits without reading until the sender's FIN is queued, so every byte
 * and the FIN are in the socket before its first read; the guard's cap is small (64 KiB, paced
 * 16 KiB writes) so the switch to TCP lands after the first few messages, and the reader's buffer
 * (256 KiB) is larger than all data, so a complete first read is "short" and the reader stops.
 * FIONREAD is checked too: with two queues this kernel's tcp_bpf_ioctl counts the psock queue only.
 * Controls: the verdict program detached (two queues again): the same reader loses the tail, so the
 * test sees the hazard when it is there; and splicing off ('none'): every byte.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { APP_UID, Testbed } from '@shunt/testbed';
import { BpfLink } from '@shunt/libbpf';
import { SockopsBackend } from './backend';
import { DEFAULT_SPLICE, type SpliceGuard, type SpliceSetting } from './splice';
import { SCRIPTS } from './test-support/sandbox';
import { interpretedMeshPod } from './test-support/mesh';
import { testbedBpffs, testbedNodeContext } from './test-support/testbed-node';

const KiB = 1 << 10;
const PORT = 9500;
const MSGS = 8;
const MSG = 16 * KiB;
const TOTAL = MSGS * MSG;
const GUARD = { queueCap: 64 * KiB, smallQueue: 16 * KiB };
/** The sidecar's outbound listener: where the redirect sends the client app's connection. */
const SIDECAR_OUTBOUND_PORT = 15001;
const PY = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface ReadResult {
  policy: 'rdhup' | 'drain' | 'late';
  bytes: number;
  reads: number[];
  bad: number | null;
  rdhupFirst: boolean;
  inq: number | null;
}

describe('splice (default auto): one receive queue, so a short-read+RDHUP reader gets every byte', () => {
  let tb: Testbed;
  let backend: SockopsBackend | undefined;
  let bpffsRoot = '';
  const verdictPin = () => path.join(bpffsRoot, 'sockops', 'links', 'shunt_splice_verdict');

  beforeAll(async () => {
    tb = await Testbed.create({ ipv6Proxy: 'off', ipv4Proxy: 'node', pods: [{ name: 'client', mesh: 'sidecar' }, { name: 'server', mesh: 'sidecar' }] });
    bpffsRoot = testbedBpffs(tb, 'shortread');
  }, 60_000);

  afterAll(async () => {
    try {
      await backend?.stop({ cleanup: true }).catch(() => undefined);
    } finally {
      await tb?.dispose();
    }
  });

  /** A backend with the given setting (undefined = the default); adopts the pins, attaching what is missing. */
  async function useBackend(splice?: SpliceSetting, guard: Partial<SpliceGuard> = GUARD): Promise<SockopsBackend> {
    await backend?.stop({ cleanup: false });
    backend = new SockopsBackend({ ...(splice ? { splice } : {}), guard });
    await backend.start(testbedNodeContext(tb, bpffsRoot));
    for (const name of ['client', 'server']) await backend.enroll(interpretedMeshPod(tb, name));
    return backend;
  }

  /** One connection per policy, in order; the reader's result for each, and the guard counters' deltas. */
  async function readWith(b: SockopsBackend, policies: ReadResult['policy'][], sizes?: number[]) {
    const c0 = (await b.observe()).counters;
    const reader = tb.exec('server', [PY, path.join(SCRIPTS, 'short-read-reader.py'), String(PORT), policies.join(',')], { uid: APP_UID });
    try {
      await tb.waitListening('server', [PORT], { watch: reader });
      const sent: { sent: number; error?: string }[] = [];
      for (let i = 0; i < policies.length; i++) {
        const argv = [PY, path.join(SCRIPTS, 'paced-sender.py'), tb.pod('server').ipv4, String(PORT), String(MSGS), String(MSG), sizes ? '100' : '30'];
        const r = await tb.run('client', sizes ? [...argv, sizes.join(',')] : argv, {
          uid: APP_UID,
          timeoutMs: 30_000,
        });
        sent.push(JSON.parse(r.stdout) as { sent: number; error?: string });
      }
      const lines = () => reader.stdoutText().split('\n').filter((l) => l.startsWith('{"policy"'));
      for (let i = 0; i < 200 && lines().length < policies.length; i++) await sleep(50);
      const c1 = (await b.observe()).counters;
      const d = (k: string) => (c1[k] ?? 0) - (c0[k] ?? 0);
      return { reads: lines().map((l) => JSON.parse(l) as ReadResult), sent, d };
    } finally {
      await reader.kill();
    }
  }

  it('after a guard switch to TCP, the short-read+RDHUP reader gets every byte in one read, in order, EOF last', async () => {
    expect(DEFAULT_SPLICE).toBe('auto');
    const b = await useBackend();
    expect((await b.observe()).nodeDetail).toMatchObject({ spliceSetting: 'auto', splice: 'all' });
    expect(fs.existsSync(verdictPin())).toBe(true);
    const { reads, sent, d } = await readWith(b, ['rdhup', 'drain']);
    expect(sent).toEqual([{ sent: TOTAL }, { sent: TOTAL }]);
    // Both flows were split: spliced first, then moved to TCP by the queue cap, and the TCP part
    // went through the verdict into the receivers' psock queues (every leg is spliced).
    expect(d('splice_bytes')).toBeGreaterThan(0);
    expect(d('splice_to_tcp_queue')).toBeGreaterThanOrEqual(2);
    expect(d('splice_verdict_bytes')).toBeGreaterThan(0);
    // Every byte and the FIN were queued before the first read; FIONREAD counted all of them.
    for (const r of reads) expect(r).toMatchObject({ rdhupFirst: true, bad: null, bytes: TOTAL, inq: TOTAL });
    const [naive, drain] = reads;
    expect(naive!.policy).toBe('rdhup');
    expect(drain!.policy).toBe('drain');
    // One queue: the first read returned everything, spliced and TCP parts alike (more than the cap).
    expect(naive!.reads).toEqual([TOTAL]);
    expect(drain!.reads).toEqual([TOTAL]);
  }, 90_000);

  it('control: with the verdict program detached (two queues) the same reader loses the tail', async () => {
    const b = await useBackend();
    try {
      // New sockets get the sockhash's programs at insertion: without the verdict, two queues.
      BpfLink.fromPin(verdictPin()).detach();
      expect(fs.existsSync(verdictPin())).toBe(false);
      const { reads, sent, d } = await readWith(b, ['rdhup']);
      expect(sent).toEqual([{ sent: TOTAL }]);
      expect(d('splice_to_tcp_queue')).toBeGreaterThanOrEqual(1);
      expect(d('splice_verdict_bytes')).toBe(0);
      expect(reads).toHaveLength(1);
      expect(reads[0]).toMatchObject({ policy: 'rdhup', rdhupFirst: true, bad: null });
      // The one read came from the psock queue only (at most the cap), then the reader stopped.
      expect(reads[0]!.reads).toHaveLength(1);
      expect(reads[0]!.bytes).toBeGreaterThan(0);
      expect(reads[0]!.bytes).toBeLessThanOrEqual(GUARD.queueCap);
      // And FIONREAD (tcp_bpf_ioctl on this kernel) counted the psock queue only, not the TCP part.
      expect(reads[0]!.inq).toBe(reads[0]!.bytes);
    } finally {
      // The backend re-attaches the missing verdict when it adopts the pins.
      await useBackend();
      expect(fs.existsSync(verdictPin())).toBe(true);
    }
  }, 90_000);

  it('a socket not yet accepted: TCP-path bytes wait in its TCP queue, and the flow stays on TCP until they are read', async () => {
    // Server sidecar -> app leg, app not accepting yet: 32 KiB spliced (queue above smallQueue),
    // 1 KiB moved to TCP by the small-write rule (its skb stays in sk_receive_queue: no sk_socket,
    // so the verdict cannot run), then 16 KiB with every TCP byte arrived (write_seq == rcv_nxt) and
    // the queue under cap/2. Switching back now would put the 16 KiB ahead of the 1 KiB; the guard
    // sees the non-empty TCP queue and stays on TCP.
    const b = await useBackend(undefined, { queueCap: 256 * KiB, smallQueue: 16 * KiB });
    const sizes = [32 * KiB, KiB, 16 * KiB];
    const total = sizes.reduce((a, n) => a + n, 0);
    const { reads, sent, d } = await readWith(b, ['late'], sizes);
    expect(sent).toEqual([{ sent: total }]);
    expect(d('splice_to_tcp_small')).toBeGreaterThanOrEqual(1);
    expect(reads).toEqual([expect.objectContaining({ policy: 'late', bad: null, bytes: total })]);
  }, 90_000);

  it('a partially retransmitted segment (head repeats queued bytes) reaches the reader once: the verdict trims the head', async () => {
    // Every byte of the app -> sidecar leg on the TCP path (a cap of 1 byte), timestamps off in the
    // client pod so a crafted segment needs no options; overlap-sender.py injects a segment that
    // repeats 3000 received bytes and carries 2000 new ones, then its kernel sends from where it
    // was (repeating those 2000). tcp_read_skb hands both skbs over whole; without the trim the
    // reader would get 5000 bytes twice.
    await tb.run('client', ['sysctl', '-qw', 'net.ipv4.tcp_timestamps=0']);
    try {
      const b = await useBackend(undefined, { queueCap: 1, smallQueue: 1 });
      const c0 = (await b.observe()).counters;
      const reader = tb.exec('server', [PY, path.join(SCRIPTS, 'short-read-reader.py'), String(PORT), 'drain'], { uid: APP_UID });
      try {
        await tb.waitListening('server', [PORT], { watch: reader });
        const r = await tb.run('client', [PY, path.join(SCRIPTS, 'overlap-sender.py'), tb.pod('server').ipv4, String(PORT), String(SIDECAR_OUTBOUND_PORT)], { timeoutMs: 40_000 });
        const sent = JSON.parse(r.stdout) as { sent: number; injected: boolean; error?: string };
        expect(sent).toEqual({ sent: 256 * KiB, injected: true });
        const lines = () => reader.stdoutText().split('\n').filter((l) => l.startsWith('{"policy"'));
        for (let i = 0; i < 200 && lines().length < 1; i++) await sleep(50);
        const c1 = (await b.observe()).counters;
        const d = (k: string) => (c1[k] ?? 0) - (c0[k] ?? 0);
        expect(lines().map((l) => JSON.parse(l) as ReadResult)).toEqual([expect.objectContaining({ policy: 'drain', bad: null, bytes: 256 * KiB })]);
        expect(d('splice_rx_overlaps')).toBeGreaterThanOrEqual(1);
        expect(d('splice_rx_trim_failed')).toBe(0);
      } finally {
        await reader.kill();
      }
    } finally {
      await tb.run('client', ['sysctl', '-qw', 'net.ipv4.tcp_timestamps=1']);
    }
  }, 90_000);

  it('control: with splicing off (none) the same short-read+RDHUP reader gets every byte', async () => {
    const b = await useBackend('none');
    expect((await b.observe()).nodeDetail).toMatchObject({ splice: 'none' });
    const { reads, sent } = await readWith(b, ['rdhup']);
    expect(sent).toEqual([{ sent: TOTAL }]);
    expect(reads).toEqual([expect.objectContaining({ policy: 'rdhup', rdhupFirst: true, bad: null, bytes: TOTAL })]);
  }, 90_000);
});
