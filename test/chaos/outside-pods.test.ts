// Node-wide, outside every pod (sockops backend attached, pods enrolled, traffic through their
// sidecars so the getsockopt records exist): a process in a cgroup that is no pod's, under the cgroup
// shunt's programs are attached to, in a netns that is no pod's, connects to listeners there and asks
// getsockopt. It must see exactly what the same probe sees in a cgroup without any shunt program
// (the baseline): connect reaches the real listener on its real port (the listener accepted it),
// SO_ORIGINAL_DST is ENOENT (no NAT), SO_RCVBUF / TCP_MAXSEG / TCP_INFO the kernel's own answers.
// Positive control: the same probe inside the client pod is redirected to its sidecar, so the
// probe does see a redirect when there is one.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cgroup2Mount } from '@shunt/libbpf';
import { createNetns, deleteNetns, Netlink } from '@shunt/netlink';
import { Testbed } from '@shunt/testbed';
import type { AgentProcess } from '../../packages/agent/src/agent/process';
import { freePort } from '../../packages/agent/src/demo/free-port';
import { metric, podNetnsPrefix, requestViaSidecars, startBuiltAgent } from '../../packages/agent/src/e2e/support';
import { removePins } from '../../packages/agent/src/node-state/pins';

const HTTP_PORT = 8080;
const PROBE = path.join(__dirname, 'sockopt-probe.py');
const RUN = `shout${randomBytes(3).toString('hex')}`;
const OUTSIDE_NETNS = `${RUN}-outside`;
let tb: Testbed;
let dir: string;
let agent: AgentProcess | undefined;
const bpffs = `/sys/fs/bpf/shunt-chaos-out-${randomBytes(4).toString('hex')}`;
const cgroups: string[] = [];
let outsideCg: string;
let baselineCg: string;

beforeAll(async () => {
  tb = await Testbed.create({ pods: [{ name: 'client', mesh: 'sidecar' }, { name: 'server', mesh: 'sidecar' }] });
  await tb.startHttpServer('server', { port: HTTP_PORT, body: 'hello' });
  dir = mkdtempSync(path.join(tmpdir(), 'shunt-chaos-out-'));
  mkdirSync(bpffs);
  writeFileSync(path.join(dir, 'pods.json'), JSON.stringify([tb.kubePod('client'), tb.kubePod('server')]));
  const ns = await createNetns(OUTSIDE_NETNS);
  const nl = Netlink.at(ns);
  await nl.setUp('lo');
  await nl.addAddress('lo', '198.18.254.1/32');
  // Under the cgroup the programs attach to, but no pod's; and one outside it (no shunt program).
  outsideCg = path.join(tb.cgroupRoot, `outside-${RUN}`);
  baselineCg = path.join(cgroup2Mount(), `${RUN}-baseline`);
  for (const cg of [outsideCg, baselineCg]) {
    mkdirSync(cg);
    cgroups.push(cg);
  }
  const port = await freePort();
  agent = await startBuiltAgent([
    '--pods-file', path.join(dir, 'pods.json'),
    '--node-name', tb.kubePod('client').spec.nodeName,
    '--redirect-mode', 'sockops',
    '--metrics-address', `127.0.0.1:${port}`,
    '--bpffs-path', bpffs,
    '--cgroup-path', tb.cgroupRoot,
    '--state-dir', path.join(dir, 'state'),
    '--netns-prefix', podNetnsPrefix(tb),
    '--cleanup-on-exit',
  ]);
  expect(await metric(port, 'shunt_pods_enrolled')).toBe(2);
}, 120_000);

afterAll(async () => {
  if (agent) expect(await agent.stop()).toBe(0);
  await removePins(path.join(bpffs, 'shunt')).catch(() => undefined);
  rmSync(bpffs, { recursive: true, force: true });
  for (const cg of cgroups.reverse()) if (existsSync(cg)) rmdirSync(cg);
  await deleteNetns(OUTSIDE_NETNS, { ignoreMissing: true });
  await tb?.dispose();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

type Probe = { connected: string; accepted?: string; origdst: string; origdst6: string; origdst_server?: string; rcvbuf: number; mss: number; tcpi_state: number; tcpi_len: number; reply: string };

/** Runs the probe in `cgroup` (moved there before exec) and the outside netns; bounded. */
function probeIn(cgroup: string, host: string, port: number): Promise<Probe> {
  const script = `echo $$ > "$1/cgroup.procs" && exec nsenter --net="/run/netns/$2" python3 "$3" "$4" "$5" --listen`;
  return new Promise((resolve, reject) => {
    execFile('sh', ['-c', script, 'sh', cgroup, OUTSIDE_NETNS, PROBE, host, String(port)], { timeout: 20_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`probe in ${cgroup} failed: ${err.message}\n${stderr}`));
      resolve(JSON.parse(stdout) as Probe);
    });
  });
}

describe('a process outside every pod cgroup, sockops attached', () => {
  beforeAll(async () => {
    // Pod traffic first, so the getsockopt program has records to (wrongly) answer from.
    for (let i = 0; i < 3; i++) expect(await requestViaSidecars(tb, 'client', 'server', HTTP_PORT)).toEqual({ ok: true, originalDst: `${tb.pod('server').ipv4}:${HTTP_PORT}` });
  }, 60_000);

  it('positive control: the same probe inside the client pod is redirected to its sidecar', async () => {
    const since = Date.now();
    const r = await tb.run('client', ['python3', PROBE, tb.pod('server').ipv4, String(HTTP_PORT)], { timeoutMs: 20_000 });
    const p = JSON.parse(r.stdout) as Probe;
    // eslint-disable-next-line no-console
    console.log('in-pod probe', p);
    expect(p.reply).toMatch(/^HTTP\/1\.[01] 200/);
    // getpeername is answered with the original destination too, so the path shows in the sidecar's log.
    const seen = await tb.waitProxyLog('client', (rec) => rec.at >= since - 1 && rec.originalDst.port === HTTP_PORT, { count: 1, timeoutMs: 3000 });
    expect(seen.length).toBe(1);
  }, 60_000);

  it.each([
    ['a non-loopback address', '198.18.254.1'],
    ['loopback', '127.0.0.1'],
  ])('to %s on a captured port: real destination, kernel answers, same as without shunt', async (_what, host) => {
    const outside = await probeIn(outsideCg, host, HTTP_PORT);
    const baseline = await probeIn(baselineCg, host, HTTP_PORT);
    expect(outside).toMatchObject({
      connected: `${host}:${HTTP_PORT}`,
      accepted: `${host}:${HTTP_PORT}`,
      origdst: 'ENOENT',
      origdst_server: 'ENOENT',
      tcpi_state: 1,
      reply: 'pong',
    });
    expect(outside.rcvbuf).toBe(131072);
    expect(outside).toEqual(baseline);
    // The probes ran while pods were enrolled and their redirect worked.
    expect(await requestViaSidecars(tb, 'client', 'server', HTTP_PORT)).toEqual({ ok: true, originalDst: `${tb.pod('server').ipv4}:${HTTP_PORT}` });
  }, 60_000);
});
