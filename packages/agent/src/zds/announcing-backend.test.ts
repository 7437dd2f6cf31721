// The ZDS decorator's order and restart behaviour, with a recording backend and a real ZdsServer
// and ZdsClient over a SEQPACKET socket (the netns handed over is this process's own).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { InstalledState, MeshPod, NodeCapabilities, NodeContext, PodRef, RedirectBackend } from '@shunt/core';
import { closeFd } from '@shunt/libbpf';
import { ZdsClient, ZdsServer, type WorkloadRequest } from '@shunt/zds';
import { ZdsAnnouncingBackend } from './announcing-backend';

const events: string[] = [];

class RecordingBackend implements RedirectBackend {
  readonly name = 'tc' as const;
  installed = new Map<string, string>();
  support(_c: NodeCapabilities) {
    return { ok: true as const };
  }
  async start(_n: NodeContext) {}
  async enroll(pod: MeshPod) {
    events.push(`redirect ${pod.name}`);
    this.installed.set(pod.uid, this.fingerprint(pod));
  }
  async unenroll(ref: PodRef) {
    events.push(`unredirect ${ref.name}`);
    this.installed.delete(ref.uid);
  }
  async observe(): Promise<InstalledState> {
    return { backend: 'tc', nodeReady: true, nodeDetail: {}, counters: {}, pods: [...this.installed].map(([uid, fingerprint]) => ({ uid, name: uid, namespace: 'ns', fingerprint })) };
  }
  fingerprint(pod: MeshPod) {
    return `fp-${pod.uid}`;
  }
  async stop() {}
}

const mesh = (name: string): MeshPod =>
  ({ uid: `uid-${name}`, name, namespace: 'ns', membership: 'ambient', netnsPath: '/proc/self/ns/net', serviceAccount: 'sa' }) as unknown as MeshPod;

async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('ZdsAnnouncingBackend', () => {
  let dir: string;
  let server: ZdsServer;
  let client: ZdsClient;
  const nack = new Map<string, string>();
  beforeEach(async () => {
    events.length = 0;
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shunt-zdsdec-'));
    server = ZdsServer.start({ socketPath: path.join(dir, 'zt.sock'), statePath: path.join(dir, 'state.json') });
    client = ZdsClient.connect(path.join(dir, 'zt.sock'), (req: WorkloadRequest, fd?: number) => {
      if (fd !== undefined) closeFd(fd);
      if (req.type !== 'snapshotSent') events.push(`zds ${req.type} ${'uid' in req ? req.uid : ''}`);
      return req.type === 'add' ? (nack.get(req.uid) ?? '') : '';
    });
    await until(() => server.connected, 'connection');
  });
  afterEach(async () => {
    client.close();
    await server.close();
    nack.clear();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('enroll: redirect first, then AddWorkload (acked); unenroll: DelWorkload, then the redirect goes', async () => {
    const inner = new RecordingBackend();
    const b = new ZdsAnnouncingBackend(inner, server);
    await b.enroll(mesh('a'));
    expect(events).toEqual(['redirect a', 'zds add uid-a']);
    expect((await b.observe()).pods).toEqual([expect.objectContaining({ uid: 'uid-a', fingerprint: 'fp-uid-a' })]);
    await b.unenroll({ uid: 'uid-a', name: 'a', namespace: 'ns' });
    expect(events).toEqual(['redirect a', 'zds add uid-a', 'zds del uid-a', 'unredirect a']);
  });

  test("a NACK rejects enroll with ztunnel's error and shows the pod unacked; other pods are fine", async () => {
    nack.set('uid-bad', 'failed to bind 15001');
    const inner = new RecordingBackend();
    const b = new ZdsAnnouncingBackend(inner, server);
    await expect(b.enroll(mesh('bad'))).rejects.toThrow(/ztunnel refused the workload: failed to bind 15001/);
    await b.enroll(mesh('good'));
    const obs = await b.observe();
    expect(obs.pods.find((p) => p.uid === 'uid-bad')?.fingerprint).toBe('fp-uid-bad+zds-unacked');
    expect(obs.pods.find((p) => p.uid === 'uid-good')?.fingerprint).toBe('fp-uid-good');
    // the retry (ztunnel fixed): the redirect is already right, only the announcement is sent
    nack.clear();
    events.length = 0;
    await b.enroll(mesh('bad'));
    expect(events).toEqual(['zds add uid-bad']);
  });

  test('after a restart, an installed pod is re-announced without touching its redirect', async () => {
    const inner = new RecordingBackend();
    inner.installed.set('uid-a', 'fp-uid-a'); // left by the previous agent
    const b = new ZdsAnnouncingBackend(inner, server);
    const first = await b.observe(); // what the reconciler adopts
    expect(first.pods[0]!.fingerprint).not.toBe(b.fingerprint(mesh('a'))); // → it calls enroll
    await b.enroll(mesh('a'));
    expect(events).toEqual(['zds add uid-a']);
    expect((await b.observe()).pods[0]!.fingerprint).toBe('fp-uid-a');
  });

  test('no ztunnel connected: enroll fails with the reason, the redirect stays for the retry', async () => {
    client.close();
    await until(() => !server.connected, 'disconnect');
    const inner = new RecordingBackend();
    const b = new ZdsAnnouncingBackend(inner, server, 300);
    await expect(b.enroll(mesh('a'))).rejects.toThrow(/NOT_CONNECTED .*no ztunnel is connected to/);
    expect(inner.installed.has('uid-a')).toBe(true);
  });

  test('a ztunnel that connects while enroll waits gets the pod in its snapshot: enroll succeeds', async () => {
    client.close();
    await until(() => !server.connected, 'disconnect');
    const b = new ZdsAnnouncingBackend(new RecordingBackend(), server, 5000);
    const enrolled = b.enroll(mesh('a'));
    await new Promise((r) => setTimeout(r, 200));
    client = ZdsClient.connect(path.join(dir, 'zt.sock'), (req: WorkloadRequest, fd?: number) => {
      if (fd !== undefined) closeFd(fd);
      if (req.type !== 'snapshotSent') events.push(`zds ${req.type} ${'uid' in req ? req.uid : ''}`);
      return '';
    });
    await enrolled;
    expect(server.isAcked('uid-a')).toBe(true);
    expect(events).toContain('zds add uid-a');
  });
});
