// TEMPORARY measurement probe (not committed): conns/s and a perf profile.
import * as fs from 'node:fs';
import { execFile } from 'node:child_process';
import { Testbed } from '@shunt/testbed';
import type { NodeCapabilities, NodeContext } from '@shunt/core';
import { SockopsBackend } from './backend';
import { silentLog } from './test-support/sandbox';
import { interpretedMeshPod } from './test-support/mesh';

const MODE = process.env.PROBE_SPLICE ?? 'auto';
const PERF = process.env.PROBE_PERF ?? '';
it('probe', async () => {
  const tb = await Testbed.create({ ipv6Proxy: 'off', pods: [{ name: 'client', mesh: 'sidecar' }, { name: 'server', mesh: 'sidecar' }] });
  const root = `/sys/fs/bpf/${tb.prefix}-probe`;
  fs.mkdirSync(root, { recursive: true });
  const b = new SockopsBackend({ splice: MODE as 'auto' });
  try {
    await b.start({ nodeName: 'node0', profile: 'istio-sidecar', caps: {} as NodeCapabilities, cgroupRoot: tb.node('node0').cgroupPath, bpffsRoot: root, log: silentLog } as NodeContext);
    for (const n of ['client', 'server']) await b.enroll(interpretedMeshPod(tb, n));
    const srv = await tb.startHttpServer('server', { port: 8080 });
    for (let i = 0; i < 3; i++) {
      const perf = PERF && i === 1 ? new Promise((r) => execFile('perf', ['record', '-a', '-g', '-o', PERF, '--', 'sleep', '3'], () => r(null))) : null;
      const w = await tb.wrk('client', `http://${tb.pod('server').ipv4}:8080/`, { seconds: 4, keepAlive: false });
      await perf;
      console.log(MODE, 'req/s', Math.round(w.requestsPerSecond));
    }
    await srv.kill();
  } finally {
    await b.stop({ cleanup: true }).catch(() => undefined);
    fs.rmSync(root, { recursive: true, force: true });
    await tb.dispose();
  }
}, 120000);
