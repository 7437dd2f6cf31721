// The pods-file reader works on the file's bytes (readPodsFileBytes; text goes the same way): its
// digests must be those of each item's text as written (the restart memo and the known-item skip
// compare them across readings and agent versions), with or without a BOM, whatever the text holds.
import { entryDigest, readPodsFileBytes, readPodsFileEntries } from './pods-file';

const pod = (name: string, note = '') => ({
  kind: 'Pod',
  metadata: { name, namespace: 'shop', uid: `u-${name}`, annotations: { 'sidecar.istio.io/status': '{}', note } },
  spec: { containers: [{ name: 'app' }, { name: 'istio-proxy' }] },
  status: { podIP: '198.18.0.10' },
});
const strip = (e: { source?: unknown; start?: unknown; end?: unknown }) => ({ ...e, source: undefined, start: undefined, end: undefined });

describe('readPodsFileBytes', () => {
  it('digests each item\'s text as written, with non-ASCII text, escapes and a BOM', () => {
    const items = [JSON.stringify(pod('a', 'é ü 日本 😀 "q" \\ ]}')), JSON.stringify(pod('b')), '{"kind":"Namespace","metadata":{"name":"shop"}}'];
    const text = ` [\n${items[0]} ,${items[1]}\n,${items[2]}]\n`;
    const plain = readPodsFileBytes(Buffer.from(text), 'p.json');
    expect(plain.map((e) => e.digest)).toEqual(items.map(entryDigest));
    expect(plain.map((e) => e.kind)).toEqual(['pod', 'pod', 'namespace']);
    expect(plain.map((e) => e.raw)).toEqual(items.map((t) => JSON.parse(t)));
    const withBom = readPodsFileBytes(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)]), 'p.json');
    expect(withBom.map(strip)).toEqual(plain.map(strip));
    expect(readPodsFileEntries(text, 'p.json').map(strip)).toEqual(plain.map(strip));
    // Known items are skipped by those digests, and keep their span to be parsed after all.
    const known = new Set(plain.map((e) => e.digest));
    const again = readPodsFileBytes(Buffer.from(text), 'p.json', (d) => known.has(d));
    expect(again.map((e) => e.kind)).toEqual(['known', 'known', 'known']);
    expect(again.map((e) => (e.source as Buffer).toString('utf8', e.start, e.end))).toEqual(items);
  });

  it('refuses bytes that are not UTF-8 or not a whole file, and reads YAML and JSON documents', () => {
    expect(() => readPodsFileBytes(Buffer.from([0x5b, 0xff, 0x5d]), 'p.json')).toThrow(/p\.json: not valid UTF-8/);
    expect(() => readPodsFileBytes(Buffer.from(`[${JSON.stringify(pod('a'))}`), 'p.json')).toThrow(/p\.json/);
    const yaml = '\ufeff- kind: Pod\n  metadata: { name: y, namespace: shop }\n';
    const fromYaml = readPodsFileBytes(Buffer.from(yaml), 'p.yaml');
    expect(fromYaml.map((e) => [e.kind, (e.raw as { metadata: { name: string } }).metadata.name])).toEqual([['pod', 'y']]);
    // A list the fast path cannot take (an item JSON refuses) goes the full parse, same entries.
    const flow = '[{kind: Pod, metadata: {name: f, namespace: shop}}]';
    expect(readPodsFileBytes(Buffer.from(flow), 'p.yaml').map((e) => e.kind)).toEqual(['pod']);
  });
});
