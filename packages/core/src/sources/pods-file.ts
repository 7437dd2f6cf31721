// Standalone pod source: a YAML or JSON file of pods in Kubernetes shape, watched for changes.
//
// File format (documented in the README):
//   - a list (`[...]`), a `kind: List`/`PodList` object with `items`, a single object, or several YAML
//     documents (`---`) of any of these;
//   - items of `kind: Pod` (or no kind) are pods, `kind: Namespace` items give namespace labels;
//   - node-local facts go under a top-level `shunt:` key of each pod:
//       shunt: { netnsPath: /var/run/netns/x, cgroupPath: /sys/fs/cgroup/…, hostVeth: veth1, netnsCookie: "4097" }
//   - a pod without `metadata.uid` is keyed by namespace/name; without namespace it is in `default`.
//
// Robustness (a broken file never unenrolls anything):
//   - a file that is missing, unreadable, not UTF-8, too large, empty, unparsable (e.g. truncated JSON),
//     or whose top level is not a list/object (a scalar) keeps the last good state and is reported
//     through `onError`; write `[]` to remove every pod;
//   - a read that would remove pods is applied only once the file has stood still for `debounceMs`
//     (a writer mid-save, or a truncated YAML list, is read again instead of trusted);
//   - each entry goes through kube/validate.ts: a bad pod becomes that pod's `reject` event (pod, field,
//     value), the others are unaffected; a duplicate uid is reported and the first entry wins.
//
// Cost (10,000 pods): a file that is a JSON list is split into its items' texts (json-items.ts) and
// each item is known by a digest of its text: an item seen at the previous reading is neither parsed
// nor validated again, so a one-pod change parses one pod and the garbage of a reading is the text,
// not 40 MB of objects. Other JSON is parsed with JSON.parse (the YAML parser is ~60× slower and far
// larger in memory; YAML remains the fallback for YAML files and JSON with comments), entries digested
// by their JSON text. Only entries that changed are validated and emitted; only digests are kept.
import { isUtf8 } from 'node:buffer';
import { hash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { watch as fsWatch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { Observable } from 'rxjs';
import { ShuntError, errorMessage } from '../errors';
import type { RestartMemoEntry } from '../types';
import { displayValue, validateNamespace, validatePod, type NamespaceValidation, type PodValidation } from '../kube/validate';
import { SYNCED, type RawPodEvent } from './events';
import { jsonArrayItems } from './json-items';
import { PodsFileDiff, type PodsFileEntry } from './pods-file-diff';

/** A pods file larger than this is refused whole (10,000 realistic pods are ~15 MiB). */
export const MAX_PODS_FILE_BYTES = 128 * 1024 * 1024;
/** Entries applied between two turns of the event loop. */
const EMIT_SLICE = 500;
/** How often a read that removes pods waits for the file to stand still before it is applied anyway. */
const MAX_SETTLE_ROUNDS = 5;

export interface PodsFileSourceOptions {
  /** Only pods with this spec.nodeName (or none) are emitted. */
  nodeName?: string;
  debounceMs?: number;
  pollMs?: number;
  /** Use fs.watch as a change hint (default true); polling alone works where inotify does not. */
  fsWatch?: boolean;
  onError?: (err: ShuntError) => void;
  /**
   * Restart memo (what the previous agent recorded, see RestartMemoEntry): at the first reading, an
   * item of a plain JSON list whose digest is in it is neither parsed nor validated but announced
   * as `unchanged`; every such item is then read in full `followUpMs` (default 200) after the
   * first sync, in slices, so the reconciler gets its object too.
   */
  restartMemo?: readonly RestartMemoEntry[];
  followUpMs?: number;
  /** After each reading applied: how many entries it had (what the reading cost is proportional to). */
  onRead?: (entries: number) => void;
}

export type { PodsFileEntry } from './pods-file-diff';

export interface PodsFileContent {
  pods: (PodValidation & { where: string })[];
  namespaces: NamespaceValidation[];
  /** Entries that were skipped, with why. */
  problems: string[];
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function topLevelItems(doc: unknown, where: string): unknown[] {
  if (Array.isArray(doc)) return doc;
  if (isObj(doc)) {
    if (Array.isArray(doc.items)) return doc.items;
    if ('metadata' in doc || 'kind' in doc || 'spec' in doc) return [doc];
  }
  // A scalar (or an object that is neither a list nor a pod) is a broken file, not "no pods".
  throw new ShuntError('SOURCE', `${where} is ${doc === null ? 'null' : Array.isArray(doc) ? 'a list' : typeof doc} (${displayValue(doc)}), not a list of pods, a List or a Pod`);
}

/** The documents of the file: JSON.parse when it is JSON, else YAML (a superset). Throws on syntax errors. */
function parseDocuments(text: string, path: string): unknown[] {
  const first = text.trimStart()[0];
  let jsonError: unknown;
  if (first === '[' || first === '{') {
    try {
      return [JSON.parse(text)];
    } catch (err) {
      jsonError = err; // maybe YAML flow syntax or JSON with comments: let YAML try
    }
  }
  // Loaded on first use: an agent whose pods file is JSON never needs the YAML parser.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { parseAllDocuments } = require('yaml') as typeof import('yaml');
  const docs = parseAllDocuments(text, { intAsBigInt: false });
  const list = Array.isArray(docs) ? docs : [docs];
  const out: unknown[] = [];
  list.forEach((doc, di) => {
    if (doc.errors.length > 0) {
      const msg = jsonError !== undefined ? errorMessage(jsonError) : (doc.errors[0]?.message ?? 'parse error');
      throw new ShuntError('SOURCE', `pods file ${path}: document ${di + 1}: ${msg}`);
    }
    out.push(doc.toJS({ maxAliasCount: 100 }));
  });
  return out;
}

/** Digest of an entry's text: what the previous reading is compared with (never the text itself, to keep memory small). */
export function entryDigest(text: string): string {
  // One-shot crypto.hash: 5× cheaper than a Hash object per entry (10,000 per reading).
  return hash('sha1', text, 'base64');
}

/**
 * Splits the file into entries; throws (keep the last good state) when the file as a whole is
 * unusable. `known(digest)`: the entry was in the previous reading (a plain JSON list's item with
 * that digest is then neither parsed nor returned with its value: kind `known`). For text already
 * in memory (tools, tests); the source reads bytes (readPodsFileBytes), and both are one path.
 */
export function readPodsFileEntries(text: string, path: string, known: (digest: string) => boolean = () => false): PodsFileEntry[] {
  return readPodsFileBytes(Buffer.from(text, 'utf8'), path, known);
}

/**
 * Entries of the file as read (bytes): a plain JSON list is split, digested and (for unknown items)
 * parsed straight from the buffer, never decoded whole; anything else is decoded and read as text.
 * Throws (keep the last good state) on a file too large or not UTF-8.
 */
export function readPodsFileBytes(buf: Buffer, path: string, known: (digest: string) => boolean = () => false): PodsFileEntry[] {
  if (buf.length > MAX_PODS_FILE_BYTES) throw new ShuntError('SOURCE', `pods file ${path}: ${buf.length} bytes, more than ${MAX_PODS_FILE_BYTES}; keeping the last known pods`);
  if (!isUtf8(buf)) throw new ShuntError('SOURCE', `pods file ${path}: not valid UTF-8; keeping the last known pods`);
  const bom = buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf ? 3 : 0;
  return jsonListEntries(buf, bom, known) ?? podsFileEntries(parseDocuments(buf.toString('utf8', bom), path), path);
}

/**
 * The fast path for a file that is a plain JSON list; undefined sends it down the full parse.
 * Digests are of the item's bytes as written, which is the digest of its text (crypto hashes a
 * string as its UTF-8).
 */
function jsonListEntries(buf: Buffer, from: number, known: (digest: string) => boolean): PodsFileEntry[] | undefined {
  const spans = jsonArrayItems(buf, from);
  if (!spans) return undefined;
  const entries: PodsFileEntry[] = [];
  for (let i = 0; i < spans.length; i++) {
    const [start, end] = spans[i]!;
    const digest = hash('sha1', buf.subarray(start, end), 'base64');
    const where = `item ${i + 1}`;
    if (known(digest)) {
      entries.push({ where, kind: 'known', raw: undefined, text: '', digest, sizeBytes: end - start, source: buf, start, end });
      continue;
    }
    const itemText = buf.toString('utf8', start, end);
    let raw: unknown;
    try {
      raw = JSON.parse(itemText);
    } catch {
      return undefined; // the whole-file parse reports it (or YAML accepts it)
    }
    // Canonical form too, so a file only reformatted changes nothing (as with the plain path).
    const canon = entryDigest(JSON.stringify(raw) ?? 'undefined');
    entries.push({ where, kind: entryKind(raw), raw, text: canon, digest, sizeBytes: itemText.length });
  }
  return entries;
}

function entryKind(raw: unknown): 'pod' | 'namespace' | 'ignored' {
  const kind = isObj(raw) ? raw.kind : undefined;
  return kind === 'Namespace' ? 'namespace' : kind === undefined || kind === 'Pod' ? 'pod' : 'ignored';
}

/** The entries of already parsed documents (the property tests feed values JSON cannot carry, e.g. NaN). */
export function podsFileEntries(parsed: unknown[], path: string): PodsFileEntry[] {
  const docs = parsed.filter((d) => d !== null && d !== undefined);
  if (docs.length === 0) {
    throw new ShuntError('SOURCE', `pods file ${path}: the file is empty; keeping the last known pods (write [] to remove every pod)`);
  }
  const entries: PodsFileEntry[] = [];
  docs.forEach((doc, di) => {
    const docWhere = docs.length > 1 ? `document ${di + 1}` : 'the file';
    let items: unknown[];
    try {
      items = topLevelItems(doc, docWhere);
    } catch (err) {
      throw new ShuntError('SOURCE', `pods file ${path}: ${errorMessage(err)}; keeping the last known pods`);
    }
    items.forEach((raw, i) => {
      const where = docs.length > 1 ? `document ${di + 1} item ${i + 1}` : `item ${i + 1}`;
      let text: string;
      try {
        text = JSON.stringify(raw) ?? 'undefined';
      } catch {
        text = `unserialisable ${where}`; // cycles or BigInt: validation rejects it below
      }
      const digest = entryDigest(text);
      entries.push({ where, raw, text: digest, digest, sizeBytes: text.length, kind: entryKind(raw) });
    });
  });
  return entries;
}

/** Parses and validates a whole pods file (tools and tests; the source validates only what changed). */
export function parsePodsFile(text: string, path: string): PodsFileContent {
  const out: PodsFileContent = { pods: [], namespaces: [], problems: [] };
  for (const e of readPodsFileEntries(text, path)) {
    if (e.kind === 'pod') out.pods.push({ ...validatePod(e.raw, { fallbackName: `<${e.where}>`, sizeBytes: e.sizeBytes }), where: e.where });
    else if (e.kind === 'namespace') out.namespaces.push(validateNamespace(e.raw));
    else out.problems.push(`${e.where}: kind ${JSON.stringify(displayValue((e.raw as { kind?: unknown }).kind))} ignored (only Pod and Namespace)`);
  }
  return out;
}


const statKey = (st: { ino: number; size: number; mtimeMs: number }) => `${st.ino}:${st.size}:${st.mtimeMs}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function podsFileSource(path: string, opts: PodsFileSourceOptions = {}): Observable<RawPodEvent> {
  const debounceMs = opts.debounceMs ?? 100;
  const pollMs = opts.pollMs ?? 1000;
  const report = (err: ShuntError) => {
    try {
      opts.onError?.(err);
    } catch {
      // a throwing error handler must not stop the source
    }
  };

  return new Observable<RawPodEvent>((subscriber) => {
    const diff = new PodsFileDiff(path, opts.nodeName, opts.restartMemo);
    let followUp: NodeJS.Timeout | undefined;
    let synced = false;
    let closed = false;
    let reading = false;
    let again = false;
    let lastStat = '';
    let lastError = '';
    let debounce: NodeJS.Timeout | undefined;
    let watcher: FSWatcher | undefined;

    const emit = (events: RawPodEvent[]) => {
      for (const e of events) if (!closed) subscriber.next(e);
    };
    const fail = (err: ShuntError) => {
      // Report each distinct file-level problem once, not on every poll.
      if (err.message === lastError) return;
      lastError = err.message;
      report(err);
    };

    const known = (digest: string) => diff.knows(digest);
    const readOnce = async (): Promise<{ stat: string; entries: PodsFileEntry[] } | undefined> => {
      let buf: Buffer;
      let st: string;
      try {
        st = statKey(await stat(path));
        lastStat = st;
        buf = await readFile(path);
      } catch (err) {
        fail(err instanceof ShuntError ? err : new ShuntError('SOURCE', `pods file ${path}: ${errorMessage(err)}; keeping the last known pods`, { cause: err }));
        return undefined;
      }
      try {
        return { stat: st, entries: readPodsFileBytes(buf, path, known) };
      } catch (err) {
        fail(err instanceof ShuntError ? err : new ShuntError('SOURCE', `pods file ${path}: ${errorMessage(err)}; keeping the last known pods`));
        return undefined;
      }
    };

    const reload = async () => {
      if (reading) {
        again = true;
        return;
      }
      reading = true;
      try {
        let settleRounds = 0;
        do {
          again = false;
          const got = await readOnce();
          if (!got || closed) continue;
          const p = diff.plan(got.entries);
          if (p.removed.length > 0 && synced && settleRounds < MAX_SETTLE_ROUNDS) {
            // Removing pods on a half-written file would unenroll them: apply only a file that stood still.
            await sleep(debounceMs);
            const now = await stat(path).then(statKey, () => 'missing');
            if (now !== got.stat) {
              settleRounds++;
              again = true;
              continue;
            }
          }
          if (closed) return;
          lastError = '';
          // Emitted entry by entry (see applySteps), with other work let in every EMIT_SLICE entries.
          const steps = diff.applySteps(p);
          let newProblems: string[] = [];
          for (let n = 1, r = steps.next(); ; n++, r = steps.next()) {
            if (r.done) {
              newProblems = r.value;
              break;
            }
            emit(r.value);
            if (n % EMIT_SLICE === 0) await new Promise((resolve) => setImmediate(resolve));
            if (closed) return;
          }
          // Pods the memo vouched for: their full objects follow, once the first sync is through.
          if (diff.vouched > 0 && !closed) {
            clearTimeout(followUp);
            followUp = setTimeout(schedule, opts.followUpMs ?? 200);
          }
          for (const problem of newProblems) report(new ShuntError('SOURCE', `pods file ${path}: ${problem}`));
          try {
            opts.onRead?.(got.entries.length);
          } catch {
            // bookkeeping only: it must not stop the source
          }
          if (!synced) {
            synced = true;
            emit([SYNCED]);
          }
        } while (again && !closed);
      } catch (err) {
        fail(new ShuntError('SOURCE', `pods file ${path}: ${errorMessage(err)}; keeping the last known pods`));
      } finally {
        reading = false;
      }
    };

    const schedule = () => {
      if (closed) return;
      if (debounce) clearTimeout(debounce);
      debounce = setTimeout(() => void reload(), debounceMs);
    };

    // Watch the directory, not the file: editors and `mv` replace the inode, which ends a file watch.
    if (opts.fsWatch !== false) {
      try {
        const name = basename(path);
        watcher = fsWatch(dirname(path), (_event, file) => {
          if (file === null || file === name) schedule();
        });
        watcher.on('error', (err) => fail(new ShuntError('SOURCE', `pods file ${path}: watch failed: ${errorMessage(err)}; polling only`)));
      } catch (err) {
        fail(new ShuntError('SOURCE', `pods file ${path}: cannot watch ${dirname(path)}: ${errorMessage(err)}; polling only`));
      }
    }
    const poll = setInterval(() => {
      stat(path).then(
        (st) => {
          if (statKey(st) !== lastStat) schedule();
        },
        () => {
          if (lastStat !== 'missing') {
            lastStat = 'missing';
            schedule();
          }
        },
      );
    }, pollMs);
    void reload();

    return () => {
      closed = true;
      if (debounce) clearTimeout(debounce);
      clearTimeout(followUp);
      clearInterval(poll);
      watcher?.close();
    };
  });
}
