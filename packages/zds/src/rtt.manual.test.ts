// Manual measurement (not a test): AddWorkload + Ack round trip over a real SEQPACKET socket, the
// client ACKing at once (what ZDS adds to an ambient pod's enroll, ztunnel's own work excluded).
// Run: cd packages/zds && npx jest --testPathIgnorePatterns=/node_modules/ --testPathPatterns rtt.manual
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { closeFd } from '@shunt/libbpf';
import { ZdsClient, ZdsServer } from './index';

test('AddWorkload+Ack round trip', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shunt-zds-rtt-'));
  const sock = path.join(dir, 'z.sock');
  const server = ZdsServer.start({ socketPath: sock });
  const client = ZdsClient.connect(sock, (_req, fd) => (fd !== undefined && closeFd(fd), ''));
  try {
    for (let i = 0; i < 500 && !server.connected; i++) await new Promise((r) => setTimeout(r, 10));
    const t: number[] = [];
    for (let i = 0; i < 2000; i++) {
      const t0 = process.hrtime.bigint();
      await server.add({ uid: `u${i}`, info: { name: `p${i}`, namespace: 'ns', serviceAccount: 'sa' }, netnsPath: '/proc/self/ns/net' });
      t.push(Number(process.hrtime.bigint() - t0) / 1000);
    }
    t.sort((a, b) => a - b);
    const q = (p: number) => t[Math.floor(p * (t.length - 1))]!.toFixed(0);
    console.log(`AddWorkload+Ack over ${t.length} adds: p50 ${q(0.5)} µs, p90 ${q(0.9)} µs, p99 ${q(0.99)} µs, max ${q(1)} µs`);
  } finally {
    client.close();
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
