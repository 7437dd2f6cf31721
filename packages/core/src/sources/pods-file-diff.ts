// Successive readings of a pods file → the RawPodEvents of what changed. Pure (no I/O, no timers), so
// the property tests drive exactly the code the source runs.
//
// Each entry is compared with the previous reading by the digest of its text: an unchanged entry
// costs one string comparison (no parse when the reader could skip it, no validation, no event), so
// a change to one of 10,000 pods validates one pod. What an entry is (pod or namespace, its key,
// whether it is this node's) is remembered by digest, for the entries the reader did not parse.
// Each changed entry goes through kube/validate.ts: a bad pod becomes its `reject` (it keeps whatever
// it had), the others are unaffected. A uid seen twice is reported and the first entry wins, so an
// appended duplicate can never take over a running pod.
import { bestEffortRef, displayValue, validateNamespace, validatePod } from '../kube/validate';
import type { RestartMemoEntry } from '../types';
import type { RawPodEvent } from './events';
import { PodNamespaceJoin } from './join';

/** One top-level entry of the file, not yet validated. */
export interface PodsFileEntry {
  /** Position for messages: `item 3`, or `document 2 item 3` in a multi-document file. */
  where: string;
  /** `known`: the same text was in the previous reading; the reader did not parse it (raw is undefined). */
  kind: 'pod' | 'namespace' | 'ignored' | 'known';
  raw: unknown;
  /**
   * Digest of the entry's canonical JSON (JSON.stringify of the parsed value): equal means nothing
   * changed, whatever the formatting. Empty for a `known` entry until plan() fills it in.
   */
  text: string;
  /** Digest of the entry's text as written: how the next reading recognises it without parsing. */
  digest: string;
  /** Size of the entry's text (validation refuses oversized pods). */
  sizeBytes: number;
  /** A `known` entry of a JSON list: the file's bytes and the entry's span, to parse it after all if needed. */
  source?: Buffer;
  start?: number;
  end?: number;
}

/** What an entry is, remembered by its digest from one reading to the next. */
type Identity = { canon: string } & (
  | {
      kind: 'pod';
      ours: boolean;
      ref: { uid: string; namespace: string; name: string };
      positional: boolean;
      /** Known from the restart memo, not from a reading: the next reading parses it. */
      memo?: RestartMemoEntry;
    }
  | { kind: 'namespace'; name: string }
  | { kind: 'ignored'; problem: string }
);

export interface PodsFilePlan {
  pods: Map<string, PodsFileEntry>;
  namespaces: Map<string, PodsFileEntry>;
  problems: string[];
  /** Keys of pods this reading would delete. */
  removed: string[];
  /** Identities of this reading's entries, by digest (kept by apply for the next reading). */
  identities: Map<string, Identity>;
}

/** Matches no entry text: the pod is announced again at this reading. */
const STALE = 'stale';
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export class PodsFileDiff {
  // Pods' objects are not kept: a namespace label change parses its pods' entries again instead.
  private readonly join = new PodNamespaceJoin({ keepObjects: false });
  /** Entry text of every pod (valid or rejected) and namespace announced, by key. */
  private readonly podText = new Map<string, string>();
  private readonly nsText = new Map<string, string>();
  /** Entry problems of the previous reading: each is reported once, when it appears. */
  private lastProblems = new Set<string>();
  private identities = new Map<string, Identity>();
  /** Digests announced now (podText and nsText values): entries the next reading may leave unparsed. */
  private announced = new Set<string>();

  /** Item digest -> memo entry, for the first reading only (see the restart memo in pods-file.ts). */
  private memo: ReadonlyMap<string, RestartMemoEntry> | undefined;
  /** Pods the last apply() announced as `unchanged` from the memo: their full objects are still to come. */
  vouched = 0;

  constructor(
    private readonly path: string,
    private readonly nodeName?: string,
    memo?: readonly RestartMemoEntry[],
  ) {
    if (memo && memo.length > 0) this.memo = new Map(memo.map((m) => [memoItemDigest(m.digest), m] as const));
  }

  private ours(raw: unknown): boolean {
    if (!this.nodeName || !isObj(raw) || !isObj(raw.spec)) return true;
    const node = raw.spec.nodeName;
    return typeof node !== 'string' || node === '' || node === this.nodeName;
  }

  /**
   * Whether the reader may leave an entry with this digest unparsed: it was in the last applied
   * reading and needs no validation if it comes again — it is what its pod or namespace was
   * announced with, or it is skipped anyway (another node's pod, a kind we ignore). Not: a second
   * entry of a duplicate uid or an invalid namespace (they are validated when they take over), a
   * pod keyed by its position (no uid, no name).
   */
  knows(digest: string): boolean {
    const id = this.identities.get(digest);
    if (!id) return this.memo?.has(digest) ?? false;
    if (id.kind === 'pod' && id.memo) return false; // vouched for last time: read in full now
    if (id.kind === 'ignored') return true;
    if (id.kind === 'pod' && !id.ours) return true;
    if (id.kind === 'pod' && id.positional) return false;
    return this.announced.has(id.canon);
  }

  private identify(e: PodsFileEntry): Identity {
    if (e.kind === 'known') {
      const id = this.identities.get(e.digest) ?? this.memoIdentity(e.digest);
      if (!id) throw new Error(`${e.where}: entry marked known but its digest was not in the previous reading`);
      return id;
    }
    const canon = e.text;
    if (e.kind === 'ignored') return { canon, kind: 'ignored', problem: `kind ${JSON.stringify(displayValue((e.raw as { kind?: unknown }).kind))} ignored (only Pod and Namespace)` };
    if (e.kind === 'namespace') return { canon, kind: 'namespace', name: bestEffortRef(e.raw, `<${e.where}>`).name };
    const fallback = `<${e.where}>`;
    const ref = bestEffortRef(e.raw, fallback);
    // A pod without a name is keyed by its position, which a digest does not carry: always parsed.
    return { canon, kind: 'pod', ours: this.ours(e.raw), ref, positional: ref.name === fallback };
  }

  private memoIdentity(digest: string): Identity | undefined {
    const m = this.memo?.get(digest);
    if (!m) return undefined;
    return { canon: `memo:${digest}`, kind: 'pod', ours: true, ref: { uid: m.uid, namespace: m.namespace, name: m.name }, positional: false, memo: m };
  }

  /** Keys the entries and says what would be removed; changes nothing. */
  plan(entries: PodsFileEntry[]): PodsFilePlan {
    const pods = new Map<string, PodsFileEntry>();
    const namespaces = new Map<string, PodsFileEntry>();
    const problems: string[] = [];
    const identities = new Map<string, Identity>();
    for (const e of entries) {
      const id = this.identify(e);
      identities.set(e.digest, id);
      if (e.kind === 'known') e.text = id.canon;
      if (id.kind === 'ignored') {
        problems.push(`${e.where}: ${id.problem}`);
      } else if (id.kind === 'namespace') {
        const name = id.name;
        const first = namespaces.get(name);
        if (first) problems.push(`${e.where}: namespace ${name} appears again (first at ${first.where}); this entry is ignored`);
        else namespaces.set(name, e);
      } else if (id.ours) {
        const ref = id.ref;
        const first = pods.get(ref.uid);
        if (first) problems.push(`${e.where}: pod ${ref.namespace}/${ref.name}: metadata.uid=${JSON.stringify(ref.uid)} appears again (first at ${first.where}); this entry is ignored`);
        else pods.set(ref.uid, e);
      }
    }
    const removed = [...this.podText.keys()].filter((k) => !pods.has(k));
    return { pods, namespaces, problems, removed, identities };
  }

  /**
   * An entry that differs from what was announced under its key was parsed, or is a known entry to
   * announce again (its namespace's labels changed), parsed now from the reading's text.
   */
  private rawOf(e: PodsFileEntry): unknown {
    if (e.kind !== 'known') return e.raw;
    if (e.source === undefined || e.start === undefined || e.end === undefined) throw new Error(`${e.where}: changed entry was not parsed`);
    return JSON.parse(e.source.toString('utf8', e.start, e.end));
  }

  /** Applies a plan: the events to emit, and the problems not reported at the previous reading. */
  apply(plan: PodsFilePlan): { events: RawPodEvent[]; newProblems: string[] } {
    const events: RawPodEvent[] = [];
    const steps = this.applySteps(plan);
    for (let r = steps.next(); ; r = steps.next()) {
      if (r.done) return { events, newProblems: r.value };
      events.push(...r.value);
    }
  }

  /**
   * apply() one entry at a time: yields each entry's events as it is validated, returns the new
   * problems. The source emits as it goes, so a reading of 10,000 new pods never holds all their
   * objects at once, and it can let other work run between entries. Nothing else may use the diff
   * until the generator is done.
   */
  *applySteps(plan: PodsFilePlan): Generator<RawPodEvent[], string[]> {
    const problems = [...plan.problems];
    this.identities = plan.identities;
    this.memo = undefined; // the first reading only
    this.vouched = 0;
    for (const [name, e] of plan.namespaces) {
      if (this.nsText.get(name) === e.text) continue;
      const v = validateNamespace(this.rawOf(e));
      if (!v.ok) {
        // Keep its last good labels (its pods keep their membership) and say why.
        problems.push(`${e.where}: namespace ${v.name}: ${v.reason}; keeping its last known labels`);
        continue;
      }
      this.nsText.set(name, e.text);
      yield this.join.upsertNamespace(v.namespace);
    }
    for (const name of [...this.nsText.keys()]) {
      if (plan.namespaces.has(name)) continue;
      this.nsText.delete(name);
      yield this.join.deleteNamespace(name);
    }
    // Pods of a namespace whose labels changed: announced again below, from their entries.
    for (const uid of this.join.takeStale()) if (this.podText.has(uid)) this.podText.set(uid, STALE);
    for (const [key, e] of plan.pods) {
      if (this.podText.get(key) === e.text) continue; // unchanged: no validation, no event
      this.podText.set(key, e.text);
      const id = plan.identities.get(e.digest);
      if (id?.kind === 'pod' && id.memo) {
        // Unparsed, vouched for by the memo. Labels of its namespace changed since: the fingerprint
        // may differ, and '' matches no installed state, so the pod waits for its full object.
        const digest = this.join.memoKey(e.digest, id.ref.namespace);
        yield this.join.vouchPod(id.ref, digest === id.memo.digest ? id.memo.fingerprint : '', digest);
        this.vouched++;
        continue;
      }
      const v = validatePod(this.rawOf(e), { fallbackName: `<${e.where}>`, sizeBytes: e.sizeBytes });
      yield v.ok ? this.join.upsertPod(v.pod, v.extras, e.digest) : this.join.rejectPod(v.ref, `pods file ${this.path}: ${e.where}: ${v.error.message}`);
    }
    for (const key of [...this.podText.keys()]) {
      if (plan.pods.has(key)) continue;
      this.podText.delete(key);
      yield this.join.deletePod(key);
    }
    this.announced = new Set([...this.podText.values(), ...this.nsText.values()]);
    const now = new Set(problems);
    const newProblems = [...now].filter((p) => !this.lastProblems.has(p));
    this.lastProblems = now;
    return newProblems;
  }
}

/** The item part of a memo digest (`<item digest>.<labels digest>`, see PodNamespaceJoin.memoKey). */
export function memoItemDigest(digest: string): string {
  const dot = digest.lastIndexOf('.');
  return dot < 0 ? digest : digest.slice(0, dot);
}
