/**
 * Upgrade from a version without the splice guard: its pinned sk_msg program splices unguarded
 * and its sockops program records no splice peers. start() on such pins (recognised by the missing
 * splice_peer map) must replace those two links and adopt the rest; on current pins it adopts all.
 * Real kernel, own bpffs dir and cgroup (unique names), removed afterwards.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BpfLink, cgroup2Mount } from '@shunt/libbpf';
import type { NodeCapabilities, NodeContext } from '@shunt/core';
import { SockopsBackend } from './backend';
import { silentLog } from './test-support/sandbox';

const tag = `shunt-upg-${process.pid}-${Date.now().toString(36)}`;
const root = path.join('/sys/fs/bpf', tag);
const cgroup = path.join(cgroup2Mount(), tag);
const ctx: NodeContext = { nodeName: 'n', profile: 'istio-sidecar', caps: {} as NodeCapabilities, cgroupRoot: cgroup, bpffsRoot: root, log: silentLog };
const linkIds = () =>
  Object.fromEntries(['shunt_redir', 'shunt_sockops', 'shunt_connect4'].map((p) => [p, BpfLink.fromPin(path.join(root, 'sockops', 'links', p)).info().id]));

describe('sockops backend: upgrade from pins without the splice guard', () => {
  let backend: SockopsBackend | null = null;
  beforeAll(() => {
    fs.mkdirSync(root, { recursive: true });
    fs.mkdirSync(cgroup, { recursive: true });
  });
  afterAll(async () => {
    await backend?.stop({ cleanup: true }).catch(() => undefined);
    fs.rmSync(root, { recursive: true, force: true });
    if (fs.existsSync(cgroup)) fs.rmdirSync(cgroup);
  });

  it('replaces the sk_msg and sockops links of legacy pins, adopts everything else', async () => {
    backend = new SockopsBackend();
    await backend.start(ctx);
    const first = linkIds();
    await backend.stop({ cleanup: false });
    backend = new SockopsBackend();
    await backend.start(ctx);
    expect(linkIds()).toEqual(first); // current pins: adopted as they are
    await backend.stop({ cleanup: false });
    fs.unlinkSync(path.join(root, 'sockops', 'maps', 'splice_peer')); // what an older version left
    backend = new SockopsBackend();
    await backend.start(ctx);
    const after = linkIds();
    expect(after.shunt_connect4).toBe(first.shunt_connect4);
    expect(after.shunt_redir).not.toBe(first.shunt_redir);
    expect(after.shunt_sockops).not.toBe(first.shunt_sockops);
    expect(fs.existsSync(path.join(root, 'sockops', 'maps', 'splice_peer'))).toBe(true);
    expect((await backend.observe()).nodeReady).toBe(true);
  });
});
