// The reader over the file's bytes (readPodsFileBytes) must see exactly what the text reader sees:
// same entries, same digests (the restart memo and the known-item skip depend on them), same refusals.
import { jsonArrayItems, jsonArrayItemsBytes } from './json-items';
import { readPodsFileBytes, readPodsFileEntries } from './pods-file';

const pod = (name: string, note = '') => ({
  kind: 'Pod',
  metadata: { name, namespace: 'shop', uid: `u-${name}`, annotations: { 'sidecar.istio.io/status': '{}', note } },
  spec: { containers: [{ name: 'app' }, { name: 'istio-proxy' }] },
  status: { podIP: '198.18.0.10' },
});
const strip = (e: { source?: unknown; start?: unknown; end?: unknown; sizeBytes: number }) => ({ ...e, source: undefined, start: undefined, end: undefined, sizeBytes: 0 });

describe('readPodsFileBytes', () => {
  it('gives the text reader\'s entries and digests, with non-ASCII text, escapes and a BOM', () => {
    const text = ` [\n${JSON.stringify(pod('a', 'é ü 日本 😀 "q" \\ ]}'))} ,${JSON.stringify(pod('b'))}\n,{"kind":"Namespace","metadata":{"name":"shop"}}]\n`;
    const fromText = readPodsFileEntries(text, 'p.json');
    for (const buf of [Buffer.from(text), Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)])]) {
      const fromBytes = readPodsFileBytes(buf, 'p.json');
      expect(fromBytes.map(strip)).toEqual(fromText.map(strip));
      // Known items are skipped the same way, by the same digests.
      const known = new Set(fromText.map((e) => e.digest));
      expect(readPodsFileBytes(buf, 'p.json', (d) => known.has(d)).map((e) => e.kind)).toEqual(['known', 'known', 'known']);
    }
    expect(jsonArrayItemsBytes(Buffer.from(text))!.length).toBe(jsonArrayItems(text)!.length);
  });

  it('refuses what the text reader refuses, and reads YAML through the text path', () => {
    expect(() => readPodsFileBytes(Buffer.from([0x5b, 0xff, 0x5d]), 'p.json')).toThrow(/not valid UTF-8/);
    expect(() => readPodsFileBytes(Buffer.from(`[${JSON.stringify(pod('a'))}`), 'p.json')).toThrow(/p\.json/);
    const yaml = '- kind: Pod\n  metadata: { name: y, namespace: shop }\n';
    expect(readPodsFileBytes(Buffer.from(yaml), 'p.yaml').map(strip)).toEqual(readPodsFileEntries(yaml, 'p.yaml').map(strip));
  });
});
