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
