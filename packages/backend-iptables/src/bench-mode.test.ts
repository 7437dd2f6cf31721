import { runCommand } from '@shunt/netlink';
import { Testbed, type PathMode } from '@shunt/testbed';
import { iptablesBenchMode } from './__fixtures__/bench-mode';
import { probeCaps } from './__fixtures__/node';

let tb: Testbed;
beforeAll(async () => {
  tb = await Testbed.create({ pods: [{ name: 'client', mesh: 'sidecar' }, { name: 'server', mesh: 'sidecar' }] });
  await tb.startEchoServer('server', { port: 8080 });
}, 60_000);
afterAll(async () => {
  await tb?.dispose();
});

test('the iptables bench mode is a testbed PathMode whose traffic passes both sidecars, and teardown removes its rules', async () => {
  const caps = await probeCaps();
  const mode: PathMode = iptablesBenchMode({ caps });
  const pods = { client: 'client', server: 'server' };
  await mode.setup(tb, pods);
  try {
    const since = Date.now();
    expect(await tb.echo('client', tb.pod('server').ipv4, 8080, 'bench')).toBe('bench');
    expect(await tb.waitProxyLog('client', (r) => r.at >= since - 1 && r.listener === 'outbound')).toHaveLength(1);
    expect(await tb.waitProxyLog('server', (r) => r.at >= since - 1 && r.listener === 'inbound')).toHaveLength(1);
  } finally {
    await mode.teardown(tb, pods);
  }
  const save = await runCommand([`iptables-${caps.iptablesVariant}-save`], { netns: tb.pod('client').netnsPath });
  expect(save).not.toMatch(/SHUNT_/);
});
