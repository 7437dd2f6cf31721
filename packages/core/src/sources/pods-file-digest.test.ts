// The pods file's fast path: a JSON list is split into item texts, an item seen at the previous
// reading is known by its digest and not parsed again. These drive the reader and the diff as the
// source does (readPodsFileEntries with diff.knows, then plan/apply), reading by reading.
import { jsonArrayItems } from './json-items';

const spansOf = (text: string) => jsonArrayItems(Buffer.from(text));
import { readPodsFileEntries } from './pods-file';
import { PodsFileDiff } from './pods-file-diff';
import type { RawPodEvent } from './events';

const pod = (name: string, extra: { uid?: string; ip?: string; node?: string; labels?: object } = {}) => ({
  kind: 'Pod',
  metadata: { name, namespace: 'shop', ...(extra.uid ? { uid: extra.uid } : {}), annotations: { 'sidecar.istio.io/status': '{}' }, ...(extra.labels ? { labels: extra.labels } : {}) },
  spec: { nodeName: extra.node ?? 'node-1', containers: [{ name: 'app' }, { name: 'istio-proxy' }] },
  status: { podIPs: [{ ip: extra.ip ?? '198.18.0.10' }] },
});
const ns = (name: string, labels: Record<string, unknown>) => ({ kind: 'Namespace', metadata: { name, labels } });

/** One reading as the source does it; returns the events and how many entries were parsed. */
function reading(diff: PodsFileDiff, text: string): { events: RawPodEvent[]; parsed: number; problems: string[] } {
  const entries = readPodsFileEntries(text, 'pods.json', (d) => diff.knows(d));
  const { events, newProblems } = diff.apply(diff.plan(entries));
  return { events, parsed: entries.filter((e) => e.kind !== 'known').length, problems: newProblems };
}
const nameOf = (e: RawPodEvent): string =>
  e.type === 'synced' ? '' : e.type === 'upsert' ? String(e.pod.metadata?.name) : e.pod.name;
const kinds = (events: RawPodEvent[]) => events.map((e) => `${e.type}:${nameOf(e)}`).sort();

describe('jsonArrayItems', () => {
  it('gives each item of a JSON list, whatever its strings and nesting hold', () => {
    const text = ' [ {"a":"x,]}\\"[","b":[1,{"c":2}]} ,\n42, "s]",[] , null ]\n';
    const buf = Buffer.from(text);
    const spans = jsonArrayItems(buf)!;
    expect(spans.map(([s, e]) => buf.toString('utf8', s, e))).toEqual(['{"a":"x,]}\\"[","b":[1,{"c":2}]}', '42', '"s]"', '[]', 'null']);
    expect(spansOf('[]')).toEqual([]);
    expect(spansOf(' [ ] ')).toEqual([]);
    // From an offset (after a BOM), and with multi-byte text in strings: offsets are bytes.
    const bom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('["日本",{"k":"😀]"}]')]);
    expect(jsonArrayItems(bom, 3)!.map(([s, e]) => bom.toString('utf8', s, e))).toEqual(['"日本"', '{"k":"😀]"}']);
    expect(jsonArrayItems(bom)).toBeUndefined();
  });

  it('refuses what is not a whole plain list (the caller then parses the file the usual way)', () => {
    for (const t of ['', '{"items":[]}', '[1,2', '[{"a":1}', '[1,,2]', '[1,]', '[,1]', '[1] x', '[1]]', '[{"a":"1]', '[1}', '# c\n[1]', '[1] // c'])
      expect([t, spansOf(t)]).toEqual([t, undefined]);
  });
});

describe('pods file readings by digest', () => {
  it('a one-pod change parses one entry and emits one upsert; an unchanged file parses nothing', () => {
    const diff = new PodsFileDiff('pods.json', 'node-1');
    const pods = Array.from({ length: 50 }, (_, i) => pod(`p${i}`, { uid: `u${i}` }));
    const first = reading(diff, JSON.stringify(pods));
    expect(first.parsed).toBe(50);
    expect(first.events.filter((e) => e.type === 'upsert')).toHaveLength(50);
    expect(reading(diff, JSON.stringify(pods))).toEqual({ events: [], parsed: 0, problems: [] });
    pods[7] = pod('p7', { uid: 'u7', ip: '198.18.0.77' });
    const changed = reading(diff, JSON.stringify(pods, null, 1).replace(/\n/g, ' ')); // other whitespace: unchanged items keep their text
    expect(kinds(changed.events)).toEqual(['upsert:p7']);
    // All items' text differs in whitespace from the first reading: each is parsed, only p7 emits.
    expect(changed.parsed).toBe(50);
    pods[8] = pod('p8', { uid: 'u8', ip: '198.18.0.88' });
    const again = reading(diff, JSON.stringify(pods, null, 1).replace(/\n/g, ' '));
    expect(again.parsed).toBe(1);
    expect(kinds(again.events)).toEqual(['upsert:p8']);
    const removed = reading(diff, JSON.stringify(pods.filter((_, i) => i !== 3), null, 1).replace(/\n/g, ' '));
    expect(removed.parsed).toBe(0);
    expect(kinds(removed.events)).toEqual(['delete:p3']);
  });

  it('a duplicate uid that takes over when the first entry goes is validated and announced', () => {
    const diff = new PodsFileDiff('pods.json', 'node-1');
    const a = pod('a', { uid: 'same', ip: '198.18.0.1' });
    const b = pod('b', { uid: 'same', ip: '198.18.0.2' });
    const first = reading(diff, JSON.stringify([a, b]));
    expect(kinds(first.events)).toEqual(['upsert:a']);
    expect(first.problems.join()).toMatch(/appears again/);
    const takeover = reading(diff, JSON.stringify([b]));
    expect(kinds(takeover.events)).toEqual(['upsert:b']);
  });

  it('a namespace that was invalid is validated again (never skipped as known), other nodes’ pods cost no parse', () => {
    const diff = new PodsFileDiff('pods.json', 'node-1');
    const good = ns('shop', { team: 'a' });
    const bad = ns('shop', { team: { not: 'a string' } });
    const other = pod('elsewhere', { uid: 'o1', node: 'node-2' });
    reading(diff, JSON.stringify([good, pod('p', { uid: 'u1' }), other]));
    const r1 = reading(diff, JSON.stringify([bad, pod('p', { uid: 'u1' }), other]));
    expect(r1.parsed).toBe(1);
    const r2 = reading(diff, JSON.stringify([bad, pod('p', { uid: 'u1' }), other]));
    expect(r2.parsed).toBe(1); // the bad namespace again; p and the other node's pod are known
    const r3 = reading(diff, JSON.stringify([ns('shop', { team: 'b' }), pod('p', { uid: 'u1' }), other]));
    expect(kinds(r3.events)).toEqual(['upsert:p']); // new labels re-announce the namespace's pod
  });

  it('an item JSON refuses sends the whole file down the plain parse: same answer as without the fast path', () => {
    const diff = new PodsFileDiff('pods.json', 'node-1');
    reading(diff, JSON.stringify([pod('p', { uid: 'u1' })]));
    const known = (d: string) => diff.knows(d);
    const broken = `[${JSON.stringify(pod('p', { uid: 'u1' }))}, {"kind": "Pod", "metadata": {"name": "q"} "x": 1}]`;
    expect(() => readPodsFileEntries(broken, 'pods.json', known)).toThrow(/pods\.json: document 1/);
    // YAML flow syntax (a trailing comma) is not JSON but is a pods file: parsed whole, as before.
    const yamlFlow = `[${JSON.stringify(pod('p', { uid: 'u1' }))}, {"kind": "Pod", "metadata": {"name": "q",}}]`;
    const entries = readPodsFileEntries(yamlFlow, 'pods.json', known);
    expect(entries.map((e) => e.kind)).toEqual(['pod', 'pod']);
    expect(entries.map((e) => e.text)).toEqual(readPodsFileEntries(yamlFlow, 'pods.json').map((e) => e.text));
  });
});
