/**
 * summarize() (what /metrics reads, count-only) against observe() on the real kernel: pods
 * enrolled, a netns prepared but not enrolled (tc_pod_meta holds it too, flagged PREPARED, and it
 * must not count as a pod), one unenrolled; the counters and the splice reading the same. Also a
 * fresh read-only backend (`shunt status`'s) summarises the same numbers from the pins alone.
 */
import * as fs from 'node:fs';
import { Testbed } from '@shunt/testbed';
import { summaryOf } from '@shunt/core';
import { TcBackend } from './backend';
import { meshPod, nodeContext } from './test-support/env';

let tb: Testbed;
let backend: TcBackend;
let bpffsRoot: string;

beforeAll(async () => {
  tb = await Testbed.create({ pods: ['a', 'b', 'c', 'p'].map((name) => ({ name, mesh: 'ambient' as const })) });
  bpffsRoot = `/sys/fs/bpf/${tb.prefix}-tcsum`;
  fs.mkdirSync(bpffsRoot, { recursive: true });
  tb.track('tc pins', async () => fs.rmSync(bpffsRoot, { recursive: true, force: true }));
  backend = new TcBackend();
  await backend.start(nodeContext(bpffsRoot));
  tb.track('tc backend', () => backend.stop({ cleanup: true }).catch(() => undefined));
}, 90_000);

afterAll(async () => {
  await tb?.dispose();
}, 60_000);

const counts = async (b: TcBackend) => {
  const full = summaryOf(await b.observe());
  const sum = await b.summarize();
  return { full, sum };
};

test('pods, counters and splice entries: summarize() equals observe(); a prepared netns is no pod', async () => {
  for (const n of ['a', 'b', 'c']) await backend.enroll(meshPod(tb, n));
  expect((await backend.prepare(tb.pod('p').netnsPath)).state).toBe('prepared');
  let { full, sum } = await counts(backend);
  expect(full.pods).toBe(3);
  expect(sum).toEqual(full);
  await backend.unenroll(meshPod(tb, 'c'));
  ({ full, sum } = await counts(backend));
  expect(full.pods).toBe(2);
  expect(sum).toEqual(full);
  // Counters moved (a connection from a through the redirect) and still agree.
  await tb.run('a', ['sh', '-c', `exec 3<>/dev/tcp/${tb.pod('b').ipv4}/9 2>/dev/null; exit 0`], { timeoutMs: 10_000 }).catch(() => undefined);
  ({ full, sum } = await counts(backend));
  expect(sum.counters).toEqual(full.counters);
});

test("a read-only backend (shunt status) summarises the same from the pins", async () => {
  const ro = new TcBackend();
  await ro.start(nodeContext(bpffsRoot, { readOnly: true }));
  try {
    const { full, sum } = await counts(ro);
    expect(sum).toEqual(full);
    expect(sum.pods).toBe(2);
  } finally {
    await ro.stop({ cleanup: false });
  }
});
