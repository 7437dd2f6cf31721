import { mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { ShuntError } from '../errors';
import { collect } from '../testing/collect';
import type { PodEvent } from '../types';
import type { ReconcilerInput } from './events';
import { interpret } from './interpret';
import { parsePodsFile, podsFileSource } from './pods-file';

const dir = mkdtempSync(join(tmpdir(), `shunt-podsfile-${process.pid}-`));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const meshPod = (name: string, extra: { metadata?: object; spec?: object } = {}) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'shop', annotations: { 'sidecar.istio.io/status': '{}' }, ...extra.metadata },
  spec: { nodeName: 'node-1', containers: [{ name: 'app' }, { name: 'istio-proxy' }], ...extra.spec },
  status: { podIPs: [{ ip: '198.18.0.10' }] },
  shunt: { netnsPath: `/var/run/netns/shunt-${name}`, hostVeth: `veth-${name}` },
});

const upserts = (items: ReconcilerInput[]) => items.filter((e): e is Extract<PodEvent, { type: 'upsert' }> => e.type === 'upsert');
const names = (items: ReconcilerInput[], type: string) =>
  items.filter((e) => e.type === type).map((e) => (e as { pod: { name: string } }).pod.name).sort();

const okPods = (c: ReturnType<typeof parsePodsFile>) => c.pods.map((p) => (p.ok ? p : undefined)).filter((p) => p !== undefined);

describe('parsePodsFile', () => {
  it('accepts a JSON list, a List object and multi-document YAML, with namespaces and extras', () => {
    const a = parsePodsFile(JSON.stringify([meshPod('a')]), 'x.json');
    expect(okPods(a)).toHaveLength(1);
    expect(okPods(a)[0]!.extras).toEqual({ netnsPath: '/var/run/netns/shunt-a', hostVeth: 'veth-a' });
    const b = parsePodsFile(JSON.stringify({ kind: 'List', items: [meshPod('a'), meshPod('b')] }), 'x.json');
    expect(okPods(b).map((p) => p.pod.metadata?.name)).toEqual(['a', 'b']);
    const c = parsePodsFile(
      [stringify({ kind: 'Namespace', metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient' } } }), stringify(meshPod('c'))].join('---\n'),
      'x.yaml',
    );
    const ns = c.namespaces[0]!;
    expect(ns.ok && ns.namespace.metadata?.labels).toEqual({ 'istio.io/dataplane-mode': 'ambient' });
    expect(okPods(c)[0]!.pod.metadata?.name).toBe('c');
  });

  it('rejects bad entries naming entry, field and value, and throws on syntax errors naming the file', () => {
    const r = parsePodsFile(JSON.stringify([42, { kind: 'Service', metadata: { name: 's' } }, { metadata: {} }]), 'p.json');
    expect(r.problems).toEqual(['item 2: kind "Service" ignored (only Pod and Namespace)']);
    expect(r.pods.map((p) => (p.ok ? 'ok' : `${p.where}: ${p.error.message}`))).toEqual([
      'item 1: pod default/<item 1>: pod="42" rejected: not an object',
      expect.stringMatching(/^item 3: pod default\/<item 3>: metadata\.name="undefined" rejected: /),
    ]);
    expect(() => parsePodsFile('[{"a": ', 'broken.json')).toThrow(/broken\.json.*JSON/);
  });
});

describe('podsFileSource', () => {
  it('emits the initial pods and then only the difference on every change', async () => {
    const path = join(dir, 'pods.yaml');
    writeFileSync(path, stringify([meshPod('a'), meshPod('b'), meshPod('elsewhere', { spec: { nodeName: 'node-2' } })]));
    const errors: ShuntError[] = [];
    const c = collect(podsFileSource(path, { nodeName: 'node-1', debounceMs: 20, pollMs: 100, onError: (e) => errors.push(e) }).pipe(interpret('istio-sidecar')));
    try {
      await c.until((i) => i.some((e) => e.type === 'synced'), 5000, 'synced');
      expect(names(c.items, 'upsert')).toEqual(['a', 'b']);
      const a = upserts(c.items).find((e) => e.pod.name === 'a')!.pod;
      expect(a).toMatchObject({ uid: 'shop/a', membership: 'sidecar', netnsPath: '/var/run/netns/shunt-a', hostVeth: 'veth-a' });

      // Modify b, add c, remove a, leave nothing else changed.
      c.clear();
      writeFileSync(path, stringify([meshPod('b', { metadata: { labels: { v: '2' } } }), meshPod('c')]));
      await c.until((i) => names(i, 'delete').includes('a') && names(i, 'upsert').includes('c') && names(i, 'upsert').includes('b'), 5000, 'diff');
      expect(names(c.items, 'upsert')).toEqual(['b', 'c']);
      expect(names(c.items, 'delete')).toEqual(['a']);

      // A bad annotation rejects only that pod.
      c.clear();
      writeFileSync(path, stringify([meshPod('b', { metadata: { labels: { v: '2' } } }), meshPod('c', { metadata: { annotations: { 'sidecar.istio.io/status': '{}', 'traffic.sidecar.istio.io/includeInboundPorts': '70000' } } })]));
      await c.until((i) => i.some((e) => e.type === 'reject'), 5000, 'reject');
      const rej = c.items.find((e) => e.type === 'reject') as Extract<PodEvent, { type: 'reject' }>;
      expect(rej.pod.name).toBe('c');
      expect(rej.reason).toMatch(/shop\/c.*includeInboundPorts.*70000/);
      expect(names(c.items, 'upsert')).toEqual([]);

      // An atomic replace (write temp + rename) is seen like an edit.
      c.clear();
      const tmp = join(dir, '.pods.yaml.tmp');
      writeFileSync(tmp, stringify([meshPod('b', { metadata: { labels: { v: '2' } } })]));
      renameSync(tmp, path);
      await c.until((i) => names(i, 'delete').includes('c'), 5000, 'delete after rename');

      // Broken YAML and a missing file keep the last state and are reported.
      c.clear();
      writeFileSync(path, '- {metadata: [');
      await new Promise((r) => setTimeout(r, 300));
      unlinkSync(path);
      await new Promise((r) => setTimeout(r, 300));
      expect(c.items).toEqual([]);
      expect(errors.map((e) => e.message).join('\n')).toMatch(/pods\.yaml.*document 1/);
      expect(errors.map((e) => e.message).join('\n')).toMatch(/ENOENT.*keeping the last known pods/);

      // An empty list removes everything.
      writeFileSync(path, '[]');
      await c.until((i) => names(i, 'delete').includes('b'), 5000, 'delete all');
    } finally {
      c.stop();
    }
  });

  it('namespace label changes re-announce that namespace’s pods (ambient)', async () => {
    const path = join(dir, 'ambient.json');
    const plain = { metadata: { name: 'w', namespace: 'shop' }, spec: { containers: [{ name: 'app' }] }, status: { podIP: '198.18.0.20' } };
    const ns = (labels: Record<string, string>) => ({ kind: 'Namespace', metadata: { name: 'shop', labels } });
    writeFileSync(path, JSON.stringify([ns({}), plain]));
    const c = collect(podsFileSource(path, { debounceMs: 20, pollMs: 100 }).pipe(interpret('istio-ambient')));
    try {
      await c.until((i) => i.some((e) => e.type === 'synced'));
      expect(upserts(c.items).map((e) => e.pod.membership)).toEqual(['none']);
      c.clear();
      writeFileSync(path, JSON.stringify([ns({ 'istio.io/dataplane-mode': 'ambient' }), plain]));
      await c.until((i) => upserts(i).some((e) => e.pod.membership === 'ambient'), 5000, 'ambient upsert');
      c.clear();
      writeFileSync(path, JSON.stringify([plain]));
      await c.until((i) => upserts(i).some((e) => e.pod.membership === 'none'), 5000, 'namespace removed');
    } finally {
      c.stop();
    }
  });

  it('polling alone notices a change (fs.watch is only a hint)', async () => {
    const path = join(dir, 'poll.json');
    writeFileSync(path, JSON.stringify([meshPod('p')]));
    const c = collect(podsFileSource(path, { debounceMs: 10, pollMs: 50, fsWatch: false }));
    try {
      await c.until((i) => i.some((e) => e.type === 'synced'));
      c.clear();
      writeFileSync(path, JSON.stringify([]));
      await c.until((i) => i.some((e) => e.type === 'delete'));
    } finally {
      c.stop();
    }
  });
});

describe('a broken pods file never unenrolls anything', () => {
  it('empty, comments only, a scalar, truncated, not UTF-8, deleted, unreadable: last good state kept, each problem reported; a good file again costs no call', async () => {
    const { Reconciler } = await import('../reconciler/reconciler');
    const { RecordingBackend } = await import('../testing/recording-backend');
    const { eventually } = await import('../testing/collect');
    const { mkdirSync, rmdirSync } = await import('node:fs');
    const path = join(dir, 'broken.json');
    const good = JSON.stringify([meshPod('a'), meshPod('b'), meshPod('c', { spec: { containers: [{ name: 'istio-proxy', securityContext: { runAsUser: 4294967296 } }] } })]);
    writeFileSync(path, good);
    const errors: string[] = [];
    const backend = new RecordingBackend('sockops');
    const rec = new Reconciler({
      backend,
      events: podsFileSource(path, { nodeName: 'node-1', debounceMs: 20, pollMs: 50, onError: (e) => errors.push(e.message) }).pipe(interpret('istio-sidecar')),
      resyncIntervalMs: 0,
    });
    await rec.start();
    try {
      await eventually(() => backend.installed.size === 2, 5000, 'a and b enrolled');
      const c = () => rec.snapshot().pods.find((p) => p.pod.name === 'c');
      expect(c()).toMatchObject({ state: 'rejected', reason: expect.stringMatching(/item 3: pod shop\/c: spec\.containers\[0\]\.securityContext\.runAsUser="4294967296" rejected: must be 0\.\.2147483647/) });
      const enrolls = backend.calls.filter((x) => x.op === 'enroll').length;

      const states: [string, string | Buffer, RegExp][] = [
        ['empty', '', /the file is empty; keeping the last known pods/],
        ['comments only', '# nothing yet\n', /the file is empty/],
        ['a scalar', '42', /the file is number \(42\), not a list of pods/],
        ['truncated', good.slice(0, good.length >> 1), /broken\.json: document 1: .*JSON/],
        ['not UTF-8', Buffer.from([0x5b, 0xff, 0xfe, 0x5d]), /not valid UTF-8/],
      ];
      for (const [what, content, expected] of states) {
        const tmp = `${path}.tmp`;
        writeFileSync(tmp, content);
        renameSync(tmp, path); // atomically replaced
        await eventually(() => errors.some((e) => expected.test(e)), 5000, `report for ${what}`);
        expect(backend.installed.size).toBe(2);
      }
      unlinkSync(path);
      await eventually(() => errors.some((e) => /ENOENT.*keeping the last known pods/.test(e)), 5000, 'report for deleted');
      mkdirSync(path); // unreadable: a directory where the file was
      await eventually(() => errors.some((e) => /EISDIR.*keeping the last known pods/.test(e)), 5000, 'report for unreadable');
      expect(backend.installed.size).toBe(2);
      rmdirSync(path);

      // The same good file again: nothing changed, so no backend call at all.
      writeFileSync(path, good);
      await new Promise((r) => setTimeout(r, 300));
      await eventually(() => rec.snapshot().queued === 0 && rec.snapshot().inFlight === 0, 5000, 'idle');
      expect(backend.calls.filter((x) => x.op === 'unenroll')).toEqual([]);
      expect(backend.calls.filter((x) => x.op === 'enroll').length).toBe(enrolls);
      // A deliberate removal still works.
      writeFileSync(path, JSON.stringify([meshPod('a')]));
      await eventually(() => !backend.installed.has('shop/b'), 5000, 'b removed');
      expect([...backend.installed.keys()]).toEqual(['shop/a']);
    } finally {
      await rec.stop();
    }
  });

  it('YAML is parsed as YAML (NaN, huge numbers) and bad values are rejected naming the field', async () => {
    const path = join(dir, 'values.yaml');
    writeFileSync(
      path,
      stringify([meshPod('ok')]) +
        '- metadata: {name: nan, namespace: shop}\n  spec: {containers: [{name: istio-proxy, securityContext: {runAsUser: .nan}}]}\n' +
        '- metadata: {name: big, namespace: shop}\n  spec: {containers: [{name: istio-proxy, securityContext: {runAsGroup: 99999999999999999999}}]}\n',
    );
    const c = collect(podsFileSource(path, { debounceMs: 20, pollMs: 100 }).pipe(interpret('istio-sidecar')));
    try {
      await c.until((i) => i.some((e) => e.type === 'synced'), 5000, 'synced');
      expect(names(c.items, 'upsert')).toEqual(['ok']);
      const reasons = c.items.filter((e): e is Extract<PodEvent, { type: 'reject' }> => e.type === 'reject').map((e) => e.reason);
      expect(reasons).toEqual([
        expect.stringMatching(/item 2: pod shop\/nan: spec\.containers\[0\]\.securityContext\.runAsUser="NaN" rejected/),
        expect.stringMatching(/item 3: pod shop\/big: spec\.containers\[0\]\.securityContext\.runAsGroup="100000000000000000000" rejected/),
      ]);
    } finally {
      c.stop();
    }
  });
});
