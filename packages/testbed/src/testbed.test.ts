// Real kernel, real processes: builds a testbed of netns pods and checks it from the inside.
import { existsSync, readFileSync } from 'node:fs';
import { apiPodOf, cgroup2Mount, Testbed } from './index';

let tb: Testbed;

beforeAll(async () => {
  tb = await Testbed.create({
    nodes: 2,
    pods: [
      { name: 'client', mesh: 'sidecar' },
      { name: 'server', mesh: 'sidecar' },
      { name: 'plain' },
      { name: 'remote', node: 'node1' },
    ],
  });
}, 60_000);

afterAll(async () => {
  await tb?.dispose();
});

test('pods reach each other over one bridge, v4 and v6', async () => {
  await tb.startEchoServer('plain', { port: 9000 });
  const plain = tb.pod('plain');
  expect(await tb.echo('client', plain.ipv4, 9000, 'hello-v4')).toBe('hello-v4');
  expect(await tb.echo('client', plain.ipv6, 9000, 'hello-v6')).toBe('hello-v6');
});

test('pods reach each other across two nodes', async () => {
  await tb.startEchoServer('remote', { port: 9000 });
  const remote = tb.pod('remote');
  expect(remote.node).toBe('node1');
  expect(await tb.echo('client', remote.ipv4, 9000, 'cross-node-v4')).toBe('cross-node-v4');
  expect(await tb.echo('client', remote.ipv6, 9000, 'cross-node-v6')).toBe('cross-node-v6');
  // The packets really crossed the node link: its counters moved in node0's netns.
  const link = (await tb.netlink('node0').links({ stats: true })).find((l) => l.name.endsWith('n1'));
  expect(link?.stats?.tx.packets).toBeGreaterThan(0);
});

test('exec runs in the pod netns and cgroup as the given uid', async () => {
  const pod = tb.pod('client');
  const h = tb.exec('client', ['sleep', '30'], { uid: 4242, gid: 4343 });
  try {
    // Wait (bounded) for the wrapper to exec into sleep.
    for (let i = 0; i < 100 && readFileSync(`/proc/${h.pid}/comm`, 'utf8').trim() !== 'sleep'; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(readFileSync(`/proc/${h.pid}/comm`, 'utf8').trim()).toBe('sleep');
    const status = readFileSync(`/proc/${h.pid}/status`, 'utf8');
    expect(/^Uid:\s+(\d+)/m.exec(status)?.[1]).toBe('4242');
    expect(/^Gid:\s+(\d+)/m.exec(status)?.[1]).toBe('4343');
    expect(/^Groups:\s*$/m.test(status)).toBe(true);
    const cg = readFileSync(`/proc/${h.pid}/cgroup`, 'utf8');
    const rel = pod.cgroupPath.slice(cgroup2Mount().length);
    expect(cg).toMatch(new RegExp(`^0::${rel.replace(/[.]/g, '\\.')}$`, 'm'));
    expect(readFileSync(`${pod.cgroupPath}/cgroup.procs`, 'utf8').split('\n')).toContain(String(h.pid));
    // Same netns inode as the pod's netns file.
    const { statSync } = await import('node:fs');
    expect(statSync(`/proc/${h.pid}/ns/net`).ino).toBe(statSync(pod.netnsPath).ino);
  } finally {
    await h.kill();
  }
  const r = await tb.run('client', ['id', '-u'], { uid: 1234 });
  expect(r.stdout.trim()).toBe('1234');
  await expect(tb.run('client', ['false'])).rejects.toThrow(/in pod client: `false` exited 1/);
});

test('kubePod describes the pod for the pods-file source', () => {
  const k = tb.kubePod('client');
  const p = tb.pod('client');
  expect(k.metadata.name).toBe('client');
  expect(k.spec.nodeName).toBe('node0');
  expect(k.spec.containers.map((c) => c.name)).toEqual(['app', 'istio-proxy']);
  expect(k.metadata.annotations['sidecar.istio.io/status']).toBeDefined();
  expect(k.status.podIPs).toEqual([{ ip: p.ipv4 }, { ip: p.ipv6 }]);
  // Exactly the pods-file `shunt:` key of @shunt/core, and no second copy in annotations.
  expect(k.shunt).toEqual({ netnsPath: p.netnsPath, cgroupPath: p.cgroupPath, hostVeth: p.hostVeth });
  expect(existsSync(k.shunt.cgroupPath)).toBe(true);
  expect(Object.keys(k.metadata.annotations).filter((a) => a.startsWith('testbed.'))).toEqual([]);
  expect(apiPodOf(k)).not.toHaveProperty('shunt');
  expect(tb.kubePod('plain').spec.containers.map((c) => c.name)).toEqual(['app']);
});
