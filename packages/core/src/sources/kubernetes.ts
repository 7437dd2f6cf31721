// Pod source backed by the Kubernetes API: list+watch of this node's pods (fieldSelector
// spec.nodeName=<node>) and of namespaces (their labels decide ambient membership).
//
// Each resource runs a small reflector loop, the protocol client-go's reflector follows:
//   list (paged) → remember resourceVersion → watch from it with bookmarks → on a clean end, watch
//   again from the last version seen (no relist) → on 410 Gone, relist and emit deletes for objects
//   that vanished meanwhile → on errors, back off with jitter and retry.
// A watch that goes silent longer than its server timeout plus a margin is abandoned (a half-open TCP
// connection never ends on its own).
import { Observable } from 'rxjs';
import { backoffDelay, type BackoffPolicy } from '../backoff';
import { ShuntError, errorMessage } from '../errors';
import { pickNamespace } from '../kube/normalise';
import { bestEffortRef, validateNamespace, validatePod } from '../kube/validate';
import { SYNCED, type RawPodEvent } from './events';
import { PodNamespaceJoin } from './join';
import { createKubeApi, KubeApiError, type KubeApi, type KubeConnection, type KubeWatchPath } from './kube-client';

export interface KubernetesSourceOptions extends KubeConnection {
  nodeName: string;
  backoff?: Partial<BackoffPolicy>;
  /** Server-side watch timeout; each watch asks for a random value in [t, 2t) so agents do not re-watch together. */
  watchTimeoutSeconds?: number;
  /** Abandon a watch that delivered nothing for this long beyond its timeout. */
  idleGraceMs?: number;
  pageSize?: number;
  /** Give up on one list request after this long. */
  requestTimeoutMs?: number;
  /** Transient problems (the stream keeps going); a bad kubeconfig errors the Observable instead. */
  onError?: (err: ShuntError) => void;
  /** Replaces the client-node API (tests of the reflector logic only). */
  api?: KubeApi;
}

interface ReflectorSpec {
  name: string;
  path: KubeWatchPath;
  query: Record<string, string | undefined>;
  list(opts: { limit?: number; continueToken?: string }): Promise<{ items: unknown[]; resourceVersion: string; continueToken?: string }>;
  keyOf(obj: unknown): string | undefined;
  upsert(obj: unknown): void;
  remove(key: string, obj: unknown): void;
}

type WatchOutcome = 'expired' | 'ended' | 'stopped';

const versionOf = (obj: unknown): string => {
  const rv = (obj as { metadata?: { resourceVersion?: unknown } })?.metadata?.resourceVersion;
  return typeof rv === 'string' ? rv : '';
};

class Stopper {
  stopped = false;
  private readonly wakers = new Set<() => void>();
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.stopped) return resolve();
      const done = () => {
        clearTimeout(t);
        this.wakers.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.wakers.add(done);
    });
  }
  onStop(fn: () => void): () => void {
    this.wakers.add(fn);
    return () => this.wakers.delete(fn);
  }
  stop() {
    this.stopped = true;
    for (const w of [...this.wakers]) w();
  }
}

class Reflector {
  private resourceVersion = '';
  /** key → resourceVersion of the object as last emitted. */
  private readonly known = new Map<string, string>();
  /** When the current watch was established (the server answered), or null while none is. */
  private watchConnectedAt: number | null = null;

  constructor(
    private readonly spec: ReflectorSpec,
    private readonly opts: Required<Pick<KubernetesSourceOptions, 'watchTimeoutSeconds' | 'idleGraceMs' | 'pageSize' | 'requestTimeoutMs'>> & {
      backoff: BackoffPolicy;
    },
    private readonly api: KubeApi,
    private readonly stopper: Stopper,
    private readonly report: (err: ShuntError) => void,
  ) {}

  async run(onFirstList: () => void): Promise<void> {
    let listed = false;
    let needList = true;
    let attempt = 0;
    while (!this.stopper.stopped) {
      try {
        if (needList) {
          await this.relist();
          needList = false;
          attempt = 0;
          if (!listed) {
            listed = true;
            onFirstList();
          }
        }
        const started = Date.now();
        const { outcome, events } = await this.watchOnce();
        if (outcome === 'stopped') return;
        if (outcome === 'expired') {
          needList = true;
          continue;
        }
        // A server that closes watches at once would otherwise make us spin.
        if (events === 0 && Date.now() - started < 1000) {
          await this.stopper.sleep(backoffDelay(attempt++, this.opts.backoff));
        } else {
          attempt = 0;
        }
      } catch (err) {
        if (this.stopper.stopped) return;
        if (err instanceof KubeApiError && err.status === 410) needList = true;
        // A watch that was up for a while and then failed is a new failure, not the next of a run:
        // retrying it after the backoff an earlier outage reached would leave the pods stale for
        // up to maxMs after every later drop.
        if (this.watchConnectedAt !== null && Date.now() - this.watchConnectedAt >= 1000) attempt = 0;
        this.watchConnectedAt = null;
        const delay = backoffDelay(attempt++, this.opts.backoff);
        this.report(new ShuntError('SOURCE', `kubernetes ${this.spec.name}: ${errorMessage(err)}; retrying in ${delay} ms`, { cause: err }));
        await this.stopper.sleep(delay);
      }
    }
  }

  private async listPage(continueToken?: string) {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new KubeApiError(`list ${this.spec.name} timed out after ${this.opts.requestTimeoutMs} ms`)), this.opts.requestTimeoutMs);
    });
    try {
      return await Promise.race([this.spec.list({ limit: this.opts.pageSize, continueToken }), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Lists everything (all pages of one consistent snapshot), emits what changed and deletes for what vanished. */
  private async relist(): Promise<void> {
    const items: unknown[] = [];
    let first = await this.listPage();
    let version = first.resourceVersion;
    items.push(...first.items);
    let cont = first.continueToken;
    while (cont && !this.stopper.stopped) {
      // A 410 here (continue token expired) propagates and the whole list starts over.
      first = await this.listPage(cont);
      items.push(...first.items);
      version = first.resourceVersion || version;
      cont = first.continueToken;
    }
    if (this.stopper.stopped) return;
    const seen = new Set<string>();
    for (const obj of items) {
      const key = this.spec.keyOf(obj);
      if (!key) continue;
      seen.add(key);
      const rv = versionOf(obj);
      if (this.known.get(key) === rv && rv !== '') continue;
      this.known.set(key, rv);
      this.spec.upsert(obj);
    }
    for (const key of [...this.known.keys()]) {
      if (seen.has(key)) continue;
      this.known.delete(key);
      this.spec.remove(key, undefined);
    }
    this.resourceVersion = version;
  }

  private watchOnce(): Promise<{ outcome: WatchOutcome; events: number }> {
    const timeoutSeconds = this.opts.watchTimeoutSeconds + Math.floor(Math.random() * this.opts.watchTimeoutSeconds);
    const idleMs = timeoutSeconds * 1000 + this.opts.idleGraceMs;
    this.watchConnectedAt = null;
    return new Promise((resolve, reject) => {
      let settled = false;
      let events = 0;
      let handle: { abort(): void } | undefined;
      let idle: NodeJS.Timeout | undefined;
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(idle);
        unStop();
        handle?.abort();
        fn();
      };
      const armIdle = () => {
        clearTimeout(idle);
        idle = setTimeout(() => finish(() => reject(new KubeApiError(`watch ${this.spec.name} silent for ${idleMs} ms`))), idleMs);
      };
      const unStop = this.stopper.onStop(() => finish(() => resolve({ outcome: 'stopped', events })));
      armIdle();
      const onEvent = (type: string, obj: unknown) => {
        if (settled) return;
        armIdle();
        events++;
        const rv = versionOf(obj);
        switch (type) {
          case 'ADDED':
          case 'MODIFIED': {
            const key = this.spec.keyOf(obj);
            if (key) {
              this.known.set(key, rv);
              this.spec.upsert(obj);
            }
            break;
          }
          case 'DELETED': {
            const key = this.spec.keyOf(obj);
            if (key && this.known.delete(key)) this.spec.remove(key, obj);
            break;
          }
          case 'BOOKMARK':
            break;
          case 'ERROR': {
            const status = obj as { code?: number; message?: string; reason?: string };
            if (status.code === 410) finish(() => resolve({ outcome: 'expired', events }));
            else finish(() => reject(new KubeApiError(`watch ${this.spec.name}: ${status.code ?? '?'} ${status.reason ?? ''} ${status.message ?? ''}`.trim(), status.code)));
            return;
          }
          default:
            return;
        }
        if (rv) this.resourceVersion = rv;
      };
      const onDone = (err: unknown) => {
        if (!err) return finish(() => resolve({ outcome: 'ended', events }));
        if (err instanceof KubeApiError && err.status === 410) return finish(() => resolve({ outcome: 'expired', events }));
        finish(() => reject(err));
      };
      this.api
        .watch(this.spec.path, { ...this.spec.query, resourceVersion: this.resourceVersion, allowWatchBookmarks: true, timeoutSeconds }, onEvent, onDone)
        .then((h) => {
          handle = h;
          if (!settled) this.watchConnectedAt = Date.now();
          if (settled) h.abort();
        }, onDone);
    });
  }
}

/** Raw pod events for the pods on `nodeName`; pipe through `interpret(profile)` for PodEvents. */
export function kubernetesSource(options: KubernetesSourceOptions): Observable<RawPodEvent> {
  if (!options.nodeName) throw new ShuntError('CONFIG', 'kubernetesSource needs a nodeName');
  const settings = {
    watchTimeoutSeconds: options.watchTimeoutSeconds ?? 300,
    idleGraceMs: options.idleGraceMs ?? 30_000,
    pageSize: options.pageSize ?? 500,
    requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
    backoff: { initialMs: options.backoff?.initialMs ?? 500, maxMs: options.backoff?.maxMs ?? 30_000 },
  };
  const report = (err: ShuntError) => options.onError?.(err);

  return new Observable<RawPodEvent>((subscriber) => {
    const stopper = new Stopper();
    const join = new PodNamespaceJoin();
    const emit = (events: RawPodEvent[]) => {
      for (const e of events) if (!stopper.stopped) subscriber.next(e);
    };

    const start = async () => {
      const api = options.api ?? (await createKubeApi(options));
      const namespaces = new Reflector(
        {
          name: 'namespaces',
          path: '/api/v1/namespaces',
          query: {},
          list: (o) => api.listNamespaces(o),
          keyOf: (obj) => pickNamespace(obj).metadata?.name,
          upsert: (obj) => {
            const v = validateNamespace(obj);
            // A namespace we cannot read keeps its last good labels (its pods keep their membership).
            if (v.ok) emit(join.upsertNamespace(v.namespace));
            else report(new ShuntError('SOURCE', `namespace ${v.name}: ${v.reason}; keeping its last known labels`));
          },
          remove: (key) => emit(join.deleteNamespace(key)),
        },
        settings,
        api,
        stopper,
        report,
      );
      const fieldSelector = `spec.nodeName=${options.nodeName}`;
      const pods = new Reflector(
        {
          name: `pods on ${options.nodeName}`,
          path: '/api/v1/pods',
          query: { fieldSelector },
          list: (o) => api.listPods({ ...o, fieldSelector }),
          keyOf: (obj) => {
            const ref = bestEffortRef(obj, '');
            return ref.name ? ref.uid : undefined;
          },
          upsert: (obj) => {
            const v = validatePod(obj, { extras: false });
            emit(v.ok ? join.upsertPod(v.pod, v.extras) : join.rejectPod(v.ref, v.error.message));
          },
          remove: (key) => emit(join.deletePod(key)),
        },
        settings,
        api,
        stopper,
        report,
      );
      // Namespaces first, so the first pod events already carry their namespace labels.
      let nsListed!: () => void;
      const nsReady = new Promise<void>((r) => (nsListed = r));
      const nsLoop = namespaces.run(() => nsListed());
      await Promise.race([nsReady, nsLoop]);
      const podLoop = pods.run(() => emit([SYNCED]));
      await Promise.all([nsLoop, podLoop]);
    };

    start().catch((err) => {
      if (!stopper.stopped) subscriber.error(err instanceof ShuntError ? err : new ShuntError('SOURCE', errorMessage(err), { cause: err }));
    });
    return () => stopper.stop();
  });
}
