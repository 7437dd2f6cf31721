// TPROXY mode end to end on the testbed. The server pod's sidecar is replaced by an HAProxy that
// does what Envoy does in TPROXY mode: a transparent inbound listener (IP_TRANSPARENT), and the
// upstream connection to the app made from the client's own address (original_src / usesrc),
// running as uid 0 gid 1337 like Istio's TPROXY proxy. The app then sees the client pod's address.
//
// One piece of Envoy cannot be reproduced with HAProxy 2.6: original_src puts SO_MARK 1337 on the
// upstream socket. The test emulates that with a single mangle rule (marked "test proxy
// emulation") ahead of the backend's jump; every other rule on the path is the backend's.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { runCommand } from '@shunt/netlink';
import { parseProxyLogLine, Testbed, type ProcessHandle, type ProxyLogRecord } from '@shunt/testbed';
import type { IptablesBackend } from './backend';
import { meshPod } from './__fixtures__/mesh';
import { endTestbedRun, startBackend } from './__fixtures__/testbed-run';

const MODE = 'sidecar.istio.io/interceptionMode';
const PROXY_GID = 1337;
const APP_PORT = 8081;

// Tells the caller which address it came from, then closes: the app's view of the client.
const WHOAMI_SOURCE = String.raw`
const net = require('node:net');
const srv = net.createServer((s) => { s.once('data', () => s.end(s.remoteAddress.replace(/^::ffff:/, ''))); s.on('error', () => {}); });
srv.listen({ host: '::', port: Number(process.argv[1]) });
process.on('SIGTERM', () => process.exit(0));
`;

const LOG_FORMAT = 'shunt-proxy proxy=haproxy listener=%f client=%ci:%cp dst=%fi:%fp upstream=%si:%sp src=%bi:%bp up=%U down=%B at=%Ts.%ms term=%ts';

function tproxySidecarConfig(): string {
  return `global
    log stdout format raw local0 info
    maxconn 1000
    nbthread 1
defaults
    mode tcp
    log global
    option dontlognull
    timeout connect 5s
    timeout client 1m
    timeout server 1m
    log-format "${LOG_FORMAT}"
frontend inbound
    bind 0.0.0.0:15006 transparent
    bind :::15006 v6only transparent
    default_backend to_app
backend to_app
    server orig 0.0.0.0:0 source 0.0.0.0 usesrc clientip
frontend outbound
    bind 0.0.0.0:15001
    default_backend original_dst
backend original_dst
    server orig 0.0.0.0:0
`;
}

let tb: Testbed;
let backend: IptablesBackend;
let proxy: ProcessHandle;
const serverLog: ProxyLogRecord[] = [];

async function ipt(fam: 4 | 6, args: string[]): Promise<void> {
  const v = backend.iptablesVariant!;
  await runCommand([`${fam === 4 ? 'iptables' : 'ip6tables'}-${v}`, ...args], { netns: tb.pod('server').netnsPath });
}

/** Envoy's original_src marks its upstream sockets; here: packets the proxy group sends from a non-local source. */
function markEmulation(fam: 4 | 6, server: string): string[] {
  const local = fam === 4 ? ['!', '-s', `${server}/32`, '-m', 'comment', '--comment', 'test proxy emulation'] : ['!', '-s', `${server}/128`, '-m', 'comment', '--comment', 'test proxy emulation'];
  return ['-t', 'mangle', '-I', 'OUTPUT', '1', '-o', 'lo', '-p', 'tcp', ...local, '-m', 'owner', '--gid-owner', String(PROXY_GID), '-j', 'MARK', '--set-mark', '1337'];
}

beforeAll(async () => {
  tb = await Testbed.create({
    pods: [
      { name: 'client', mesh: 'sidecar' },
      { name: 'server', mesh: 'sidecar', annotations: { [MODE]: 'TPROXY' } },
      { name: 'plain', mesh: 'none' },
    ],
  });
  const server = tb.pod('server');
  await tb.stopSidecar('server');
  const cfg = path.join(tb.stateDir, 'server-tproxy-sidecar.cfg');
  await fs.writeFile(cfg, tproxySidecarConfig(), { mode: 0o644 });
  proxy = tb.exec('server', ['haproxy', '-db', '-f', cfg], { uid: 0, gid: PROXY_GID });
  proxy.stdout.setEncoding('utf8');
  let partial = '';
  proxy.stdout.on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) {
      const r = parseProxyLogLine(l);
      if (r) serverLog.push(r);
    }
  });
  await tb.waitListening('server', [15001, 15006], { family: 4, watch: proxy });
  const whoami = tb.exec('server', [process.execPath, '-e', WHOAMI_SOURCE, String(APP_PORT)], { uid: 1000 });
  await tb.waitListening('server', [APP_PORT], { watch: whoami });
  await tb.startEchoServer('server', { port: 15020 });

  backend = await startBackend();
  const serverPod = meshPod(tb, 'server');
  expect(serverPod.interceptionMode).toBe('TPROXY');
  await backend.enroll(meshPod(tb, 'client'));
  await backend.enroll(serverPod);
  await ipt(4, markEmulation(4, server.ipv4));
  await ipt(6, markEmulation(6, server.ipv6));
}, 120_000);

afterAll(() => endTestbedRun(backend, tb));

async function waitServerLog(filter: (r: ProxyLogRecord) => boolean): Promise<ProxyLogRecord[]> {
  for (let i = 0; i < 100; i++) {
    const hits = serverLog.filter(filter);
    if (hits.length > 0) return hits;
    await new Promise((r) => setTimeout(r, 50));
  }
  return [];
}

test.each([4, 6] as const)('IPv%d: the server app sees the client pod address; the TPROXY listener saw the original destination', async (fam) => {
  const client = tb.pod('client');
  const server = tb.pod('server');
  const [caddr, saddr] = fam === 4 ? [client.ipv4, server.ipv4] : [client.ipv6, server.ipv6];
  const since = Date.now();
  // From the plain pod (no sidecar) and from the client pod (through its REDIRECT sidecar).
  const plain = tb.pod('plain');
  const paddr = fam === 4 ? plain.ipv4 : plain.ipv6;
  expect(await tb.echo('plain', saddr, APP_PORT, 'who')).toBe(paddr);
  expect(await tb.echo('client', saddr, APP_PORT, 'who')).toBe(caddr);

  const inbound = await waitServerLog((r) => r.at >= since - 1 && r.listener === 'inbound' && r.originalDst.port === APP_PORT);
  expect(inbound.map((r) => [r.client.address, r.originalDst.address, r.upstreamSource?.address]).sort()).toEqual(
    [
      [caddr, saddr, caddr],
      [paddr, saddr, paddr],
    ].sort(),
  );
  if (fam === 4) {
    const out = await tb.waitProxyLog('client', (r) => r.at >= since - 1 && r.listener === 'outbound' && r.originalDst.port === APP_PORT);
    expect(out[0]?.originalDst).toEqual({ address: saddr, port: APP_PORT });
  }
});

test('TPROXY: inbound to 15020 is not captured', async () => {
  const since = Date.now();
  expect(await tb.echo('plain', tb.pod('server').ipv4, 15020, 'status')).toBe('status');
  await new Promise((r) => setTimeout(r, 200));
  expect(serverLog.filter((r) => r.at >= since - 1)).toEqual([]);
});

test('TPROXY re-apply is a no-op and cleanup removes chains and policy routing', async () => {
  expect(await backend.enrollWithResult(meshPod(tb, 'server'))).toEqual({ changed: false, transactions: 0 });
  await backend.unenroll(meshPod(tb, 'server'));
  const v = backend.iptablesVariant!;
  for (const bin of [`iptables-${v}-save`, `ip6tables-${v}-save`]) {
    expect(await runCommand([bin], { netns: tb.pod('server').netnsPath })).not.toMatch(/SHUNT_/);
  }
  const rules = await tb.netlink('server').rules({ family: 4 });
  expect(rules.filter((r) => r.fwmark === 1337)).toEqual([]);
});
