// The fact the bench's iperf3 sequencing rests on: iperf3's server replaces its listener after
// every test, so "a listener exists" right after a test is the old one about to close.
import { Testbed } from '../testbed';
import { iperfTurns } from './iperf-turns';

let tb: Testbed;
beforeAll(async () => {
  tb = await Testbed.create({ pods: [{ name: 'c' }, { name: 's' }] });
}, 60_000);
afterAll(async () => {
  await tb?.dispose();
});

it('each iperf3 test gets a listener the previous test did not use', async () => {
  const port = 5301;
  await tb.startIperfServer('s', { port });
  const next = iperfTurns(tb, 's', port);
  const first = await tb.listenerInodes('s', port);
  expect(first).toHaveLength(1);
  await next();
  const a = await tb.iperf('c', tb.pod('s').ipv4, { port, seconds: 1 });
  expect(a.bitsPerSecond).toBeGreaterThan(0);
  await next(); // returns only once a new listener is up
  const second = await tb.listenerInodes('s', port);
  expect(second).toHaveLength(1);
  expect(second[0]).not.toBe(first[0]);
  const b = await tb.iperf('c', tb.pod('s').ipv4, { port, seconds: 1 });
  expect(b.bitsPerSecond).toBeGreaterThan(0);
}, 60_000);

it('waits out the old listener and the gap; takes the old one after 2 s when no test reached the server', async () => {
  const script: string[][] = [['A'], ['A'], ['A'], [], [], ['B']];
  let calls = 0;
  const fake = { listenerInodes: async () => script[Math.min(calls++, script.length - 1)]! } as unknown as Testbed;
  const next = iperfTurns(fake, 's', 1);
  await next(); // first test: any listener (A)
  expect(calls).toBe(1);
  await next(); // A still there, then none, then B
  expect(calls).toBe(6);
  const stuck = { listenerInodes: async () => ['B'] } as unknown as Testbed;
  const again = iperfTurns(stuck, 's', 1);
  await again();
  const t0 = Date.now();
  await again(); // the same B for 2 s, then taken
  expect(Date.now() - t0).toBeGreaterThanOrEqual(1900);
});
