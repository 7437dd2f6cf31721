// Standalone pod source: a YAML or JSON file of pods in Kubernetes shape, watched for changes.
//
// File format (documented in the README):
//   - a list (`[...]`), a `kind: List`/`PodList` object with `items`, a single object, or several YAML
//     documents (`---`) of any of these;
//   - items of `kind: Pod` (or no kind) are pods, `kind: Namespace` items give namespace labels;
//   - node-local facts go under a top-level `shunt:` key of each pod:
//       shunt: { netnsPath: /var/run/netns/x, cgroupPath: /sys/fs/cgroup/…, hostVeth: veth1, netnsCookie: "4097" }
//   - a pod without `metadata.uid` is keyed by namespace/name; without namespace it is in `default`.
// The file is re-read on fs.watch events (debounced) and on a periodic stat (fs.watch misses changes on
// some filesystems and across atomic renames); each read emits only the difference. A missing or
// unparsable file keeps the last good state (an editor mid-save must not unenroll the node) and is
// reported through `onError`; write an empty list to remove every pod.
import { readFile, stat } from 'node:fs/promises';
import { watch as fsWatch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { Observable } from 'rxjs';
import { parseAllDocuments } from 'yaml';
import { ShuntError, errorMessage } from '../errors';
import { pickExtras, pickNamespace, pickPod, podRefOf } from '../kube/normalise';
import type { KubeNamespace, KubePod, PodExtras } from '../kube/types';
import { SYNCED, type RawPodEvent } from './events';
import { PodNamespaceJoin } from './join';

export interface PodsFileSourceOptions {
  /** Only pods with this spec.nodeName (or none) are emitted. */
  nodeName?: string;
  debounceMs?: number;
  pollMs?: number;
  /** Use fs.watch as a change hint (default true); polling alone works where inotify does not. */
  fsWatch?: boolean;
  onError?: (err: ShuntError) => void;
}

export interface PodsFileContent {
  pods: { pod: KubePod; extras: PodExtras }[];
  namespaces: KubeNamespace[];
  /** Entries that were skipped, with why. */
  problems: string[];
}

function itemsOf(doc: unknown): unknown[] {
  if (doc === null || doc === undefined) return [];
  if (Array.isArray(doc)) return doc;
  if (typeof doc === 'object' && Array.isArray((doc as { items?: unknown }).items)) return (doc as { items: unknown[] }).items;
  return [doc];
}

/** Parses the text of a pods file; throws on syntax errors, collects per-entry problems. */
export function parsePodsFile(text: string, path: string): PodsFileContent {
  const docs = parseAllDocuments(text);
  const list = Array.isArray(docs) ? docs : [docs];
  const out: PodsFileContent = { pods: [], namespaces: [], problems: [] };
  list.forEach((doc, di) => {
    if (doc.errors.length > 0) {
      throw new ShuntError('SOURCE', `pods file ${path}: document ${di + 1}: ${doc.errors[0]?.message ?? 'parse error'}`);
    }
    itemsOf(doc.toJS()).forEach((item, i) => {
      const where = `document ${di + 1} item ${i + 1}`;
      if (typeof item !== 'object' || item === null || Array.isArray(item)) {
        out.problems.push(`${where}: not an object`);
        return;
      }
      const kind = (item as { kind?: unknown }).kind;
      if (kind === 'Namespace') {
        const ns = pickNamespace(item);
        if (ns.metadata?.name) out.namespaces.push(ns);
        else out.problems.push(`${where}: Namespace without metadata.name`);
      } else if (kind === undefined || kind === 'Pod') {
        const pod = pickPod(item);
        if (!pod.metadata?.name) out.problems.push(`${where}: Pod without metadata.name`);
        else out.pods.push({ pod, extras: pickExtras(item) });
      } else {
        out.problems.push(`${where}: kind ${JSON.stringify(kind)} ignored (only Pod and Namespace)`);
      }
    });
  });
  return out;
}

export function podsFileSource(path: string, opts: PodsFileSourceOptions = {}): Observable<RawPodEvent> {
  const debounceMs = opts.debounceMs ?? 100;
  const pollMs = opts.pollMs ?? 1000;
  const report = (err: ShuntError) => opts.onError?.(err);

  return new Observable<RawPodEvent>((subscriber) => {
    const join = new PodNamespaceJoin();
    const podText = new Map<string, string>();
    const nsText = new Map<string, string>();
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
      // Report each distinct problem once, not on every poll.
      if (err.message === lastError) return;
      lastError = err.message;
      report(err);
    };

    const apply = (content: PodsFileContent) => {
      const seenNs = new Set<string>();
      for (const ns of content.namespaces) {
        const name = ns.metadata!.name!;
        seenNs.add(name);
        const text = JSON.stringify(ns.metadata?.labels ?? {});
        if (nsText.get(name) === text) continue;
        nsText.set(name, text);
        emit(join.upsertNamespace(ns));
      }
      for (const name of [...nsText.keys()]) {
        if (seenNs.has(name)) continue;
        nsText.delete(name);
        emit(join.deleteNamespace(name));
      }
      const seenPods = new Set<string>();
      for (const { pod, extras } of content.pods) {
        if (opts.nodeName && pod.spec?.nodeName && pod.spec.nodeName !== opts.nodeName) continue;
        const uid = podRefOf(pod).uid;
        if (seenPods.has(uid)) {
          fail(new ShuntError('SOURCE', `pods file ${path}: pod ${uid} appears twice; the last entry wins`));
        }
        seenPods.add(uid);
        const text = JSON.stringify([pod, extras]);
        if (podText.get(uid) === text) continue;
        podText.set(uid, text);
        emit(join.upsertPod(pod, extras));
      }
      for (const uid of [...podText.keys()]) {
        if (seenPods.has(uid)) continue;
        podText.delete(uid);
        emit(join.deletePod(uid));
      }
      for (const p of content.problems) fail(new ShuntError('SOURCE', `pods file ${path}: ${p}`));
      if (!synced) {
        synced = true;
        emit([SYNCED]);
      }
    };

    const reload = async () => {
      if (reading) {
        again = true;
        return;
      }
      reading = true;
      try {
        do {
          again = false;
          let text: string;
          try {
            const st = await stat(path);
            lastStat = `${st.ino}:${st.size}:${st.mtimeMs}`;
            text = await readFile(path, 'utf8');
          } catch (err) {
            fail(new ShuntError('SOURCE', `pods file ${path}: ${errorMessage(err)}; keeping the last known pods`, { cause: err }));
            continue;
          }
          let content: PodsFileContent;
          try {
            content = parsePodsFile(text, path);
          } catch (err) {
            fail(err instanceof ShuntError ? err : new ShuntError('SOURCE', `pods file ${path}: ${errorMessage(err)}`));
            continue;
          }
          if (closed) return;
          lastError = '';
          apply(content);
        } while (again && !closed);
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
          if (`${st.ino}:${st.size}:${st.mtimeMs}` !== lastStat) schedule();
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
      clearInterval(poll);
      watcher?.close();
    };
  });
}
