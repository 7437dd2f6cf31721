// Successive readings of a pods file → the RawPodEvents of what changed. Pure (no I/O, no timers), so
// the property tests drive exactly the code the source runs.
//
// Each entry is compared with the previous reading by its JSON text: an unchanged entry costs one
// string comparison (no validation, no event), so a change to one of 10,000 pods validates one pod.
// Each changed entry goes through kube/validate.ts: a bad pod becomes its `reject` (it keeps whatever
// it had), the others are unaffected. A uid seen twice is reported and the first entry wins, so an
// appended duplicate can never take over a running pod.
import { bestEffortRef, displayValue, validateNamespace, validatePod } from '../kube/validate';
import type { RawPodEvent } from './events';
import { PodNamespaceJoin } from './join';

/** One top-level entry of the file, not yet validated. */
export interface PodsFileEntry {
  /** Position for messages: `item 3`, or `document 2 item 3` in a multi-document file. */
  where: string;
  kind: 'pod' | 'namespace' | 'ignored';
  raw: unknown;
  /** Canonical JSON of the entry: equal text means nothing changed. */
  text: string;
}

export interface PodsFilePlan {
  pods: Map<string, PodsFileEntry>;
  namespaces: Map<string, PodsFileEntry>;
  problems: string[];
  /** Keys of pods this reading would delete. */
  removed: string[];
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export class PodsFileDiff {
  private readonly join = new PodNamespaceJoin();
  /** Entry text of every pod (valid or rejected) and namespace announced, by key. */
  private readonly podText = new Map<string, string>();
  private readonly nsText = new Map<string, string>();
  /** Entry problems of the previous reading: each is reported once, when it appears. */
  private lastProblems = new Set<string>();

  constructor(
    private readonly path: string,
    private readonly nodeName?: string,
  ) {}

  private ours(raw: unknown): boolean {
    if (!this.nodeName || !isObj(raw) || !isObj(raw.spec)) return true;
    const node = raw.spec.nodeName;
    return typeof node !== 'string' || node === '' || node === this.nodeName;
  }

  /** Keys the entries and says what would be removed; changes nothing. */
  plan(entries: PodsFileEntry[]): PodsFilePlan {
    const pods = new Map<string, PodsFileEntry>();
    const namespaces = new Map<string, PodsFileEntry>();
    const problems: string[] = [];
    for (const e of entries) {
      if (e.kind === 'ignored') {
        problems.push(`${e.where}: kind ${JSON.stringify(displayValue((e.raw as { kind?: unknown }).kind))} ignored (only Pod and Namespace)`);
      } else if (e.kind === 'namespace') {
        const name = bestEffortRef(e.raw, `<${e.where}>`).name;
        const first = namespaces.get(name);
        if (first) problems.push(`${e.where}: namespace ${name} appears again (first at ${first.where}); this entry is ignored`);
        else namespaces.set(name, e);
      } else if (this.ours(e.raw)) {
        const ref = bestEffortRef(e.raw, `<${e.where}>`);
        const first = pods.get(ref.uid);
        if (first) problems.push(`${e.where}: pod ${ref.namespace}/${ref.name}: metadata.uid=${JSON.stringify(ref.uid)} appears again (first at ${first.where}); this entry is ignored`);
        else pods.set(ref.uid, e);
      }
    }
    const removed = [...this.podText.keys()].filter((k) => !pods.has(k));
    return { pods, namespaces, problems, removed };
  }

  /** Applies a plan: the events to emit, and the problems not reported at the previous reading. */
  apply(plan: PodsFilePlan): { events: RawPodEvent[]; newProblems: string[] } {
    const events: RawPodEvent[] = [];
    const problems = [...plan.problems];
    for (const [name, e] of plan.namespaces) {
      if (this.nsText.get(name) === e.text) continue;
      const v = validateNamespace(e.raw);
      if (!v.ok) {
        // Keep its last good labels (its pods keep their membership) and say why.
        problems.push(`${e.where}: namespace ${v.name}: ${v.reason}; keeping its last known labels`);
        continue;
      }
      this.nsText.set(name, e.text);
      events.push(...this.join.upsertNamespace(v.namespace));
    }
    for (const name of [...this.nsText.keys()]) {
      if (plan.namespaces.has(name)) continue;
      this.nsText.delete(name);
      events.push(...this.join.deleteNamespace(name));
    }
    for (const [key, e] of plan.pods) {
      if (this.podText.get(key) === e.text) continue; // unchanged: no validation, no event
      this.podText.set(key, e.text);
      const v = validatePod(e.raw, { fallbackName: `<${e.where}>`, sizeBytes: e.text.length });
      events.push(...(v.ok ? this.join.upsertPod(v.pod, v.extras) : this.join.rejectPod(v.ref, `pods file ${this.path}: ${e.where}: ${v.error.message}`)));
    }
    for (const key of [...this.podText.keys()]) {
      if (plan.pods.has(key)) continue;
      this.podText.delete(key);
      events.push(...this.join.deletePod(key));
    }
    const now = new Set(problems);
    const newProblems = [...now].filter((p) => !this.lastProblems.has(p));
    this.lastProblems = now;
    return { events, newProblems };
  }
}
