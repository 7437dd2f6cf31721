/**
 * End to end on the testbed: real HAProxy sidecars (uid 1337) that read SO_ORIGINAL_DST, pods in
 * their own netns and cgroups, the backend attached to the node's cgroup.
 */
import * as fs from 'node:fs';
import { Testbed } from '@shunt/testbed';
import { SockopsBackend } from './backend';
import { sidecarMeshPod } from './bench-mode';
import { silentLog } from './test-support/sandbox';
import type { NodeCapabilities } from '@shunt/core';

describe('sockops backend with HAProxy sidecars (testbed)', () => {
  let tb: Testbed;
  let backend: SockopsBackend;
  let bpffsRoot = '';

  beforeAll(async () => {
    tb = await Testbed.create({
      pods: [
        { name: 'client', mesh: 'sidecar' },
        { name: 'server', mesh: 'sidecar' },
        { name: 'plain', mesh: 'none' },
      ],
    });
    await tb.startSidecar('client');
    await tb.startSidecar('server');
    await tb.startEchoServer('server', { port: 9000 });
    await tb.startEchoServer('plain', { port: 9000 });
    bpffsRoot = `/sys/fs/bpf/${tb.prefix}-sockops`;
    fs.mkdirSync(bpffsRoot, { recursive: true });
    backend = new SockopsBackend({ splice: 'all' });
    await backend.start({
      nodeName: 'node0',
      profile: 'istio-sidecar',
      caps: {} as NodeCapabilities,
      cgroupRoot: tb.node(tb.pod('client').node).cgroupPath,
      bpffsRoot,
      log: silentLog,
    });
    await backend.enroll(sidecarMeshPod(tb.pod('client')));
    await backend.enroll(sidecarMeshPod(tb.pod('server')));
  }, 60_000);

  afterAll(async () => {
    await backend?.stop({ cleanup: true }).catch(() => undefined);
    if (bpffsRoot) fs.rmSync(bpffsRoot, { recursive: true, force: true });
    await tb?.dispose();
  });

  it('IPv4: both sidecars see the original destination, no conntrack entries', async () => {
    const server = tb.pod('server');
    const since = Date.now();
    const ct0 = [await tb.conntrackCount('client'), await tb.conntrackCount('server')];
    expect(await tb.echo('client', server.ipv4, 9000, 'ping4')).toContain('ping4');
    const out = await tb.waitProxyLog('client', (r) => r.at >= since - 1 && r.listener === 'outbound');
    const inb = await tb.waitProxyLog('server', (r) => r.at >= since - 1 && r.listener === 'inbound');
    expect(out[0]?.originalDst).toEqual({ address: server.ipv4, port: 9000 });
    expect(inb[0]?.originalDst).toEqual({ address: server.ipv4, port: 9000 });
    const ct1 = [await tb.conntrackCount('client'), await tb.conntrackCount('server')];
    // null: conntrack is not even loaded in these netns, which is the point.
    expect(ct1.map((c, i) => (c === null ? 0 : c - (ct0[i] ?? 0)))).toEqual([0, 0]);
  });

  it('IPv6: the sidecars see the original destination', async () => {
    const status = tb.sidecarStatus('client');
    if (status.ipv6 !== 'running') {
      console.warn(`IPv6 stand-in not running: ${JSON.stringify(status.ipv6)}; skipping`);
      return;
    }
    const server = tb.pod('server');
    const since = Date.now();
    expect(await tb.echo('client', server.ipv6, 9000, 'ping6')).toContain('ping6');
    const out = await tb.waitProxyLog('client', (r) => r.at >= since - 1 && r.listener === 'outbound');
    const inb = await tb.waitProxyLog('server', (r) => r.at >= since - 1 && r.listener === 'inbound');
    expect(out[0]?.originalDst).toEqual({ address: server.ipv6, port: 9000 });
    expect(inb[0]?.originalDst).toEqual({ address: server.ipv6, port: 9000 });
  });

  it('leaves a pod outside the mesh alone', async () => {
    const plain = tb.pod('plain');
    const since = Date.now();
    expect(await tb.echo('plain', plain.ipv4, 9000, 'self')).toContain('self');
    expect(tb.proxyLog('client', { since })).toEqual([]);
    expect(tb.proxyLog('server', { since })).toEqual([]);
  });

  it('keeps loopback nearly flat while a spliced transfer runs', async () => {
    const server = tb.pod('server');
    const before = await tb.counters('client');
    const big = 'x'.repeat(100 * 1024); // argv-sized: one exec argument is at most 128 KiB
    expect((await tb.echo('client', server.ipv4, 9000, big)).length).toBeGreaterThanOrEqual(big.length);
    const after = await tb.counters('client');
    const st = await backend.observe();
    expect(st.counters.bytes_spliced).toBeGreaterThan(big.length);
    // One app<->proxy connection: handshake and teardown only (~10 packets), not the payload.
    expect(after.lo.rxPackets - before.lo.rxPackets).toBeLessThan(40);
  });
});
