// A small fake Kubernetes API server that speaks the real list/watch protocol over HTTP, so the real
// @kubernetes/client-node can be tested against it: PodList/NamespaceList with resourceVersion and
// limit/continue, `?watch=true` as a chunked stream of JSON lines (ADDED/MODIFIED/DELETED/BOOKMARK/ERROR),
// replay from a resourceVersion, 410 Gone for compacted versions, the spec.nodeName field selector with
// the ADDED/DELETED transitions a real apiserver synthesises, dropped connections and injected failures.
// Only node built-ins are used so any package's tests can import it.
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo, Socket } from 'node:net';

type Obj = { apiVersion?: string; kind?: string; metadata?: Record<string, any>; spec?: Record<string, any>; [k: string]: any };
type Resource = 'pods' | 'namespaces';
type WatchType = 'ADDED' | 'MODIFIED' | 'DELETED';

interface Change {
  rv: number;
  resource: Resource;
  type: WatchType;
  object: Obj;
  previous?: Obj;
}

/** What the client asked for in Accept: kubectl asks for server-side printing (meta.k8s.io Table). */
type Format = 'object' | 'table';
const TABLE_CONTENT_TYPE = 'application/json;as=Table;v=v1;g=meta.k8s.io';
function wantedFormat(accept: string | undefined): Format {
  // The first acceptable type wins, as the apiserver's negotiation does; kubectl lists Table first.
  for (const part of (accept ?? '').split(',')) {
    const t = part.trim();
    if (/;\s*as=Table/.test(t) && /g=meta\.k8s\.io/.test(t) && /v=v1(;|$|\s)/.test(t + ';')) return 'table';
    if (/^(application\/json|\*\/\*)\s*(;|$)/.test(t) && !/as=/.test(t)) return 'object';
  }
  return 'object';
}

function age(created: string | undefined): string {
  const ms = created ? Date.now() - Date.parse(created) : 0;
  const sec = Math.max(0, Math.floor(ms / 1000));
  return sec < 120 ? `${sec}s` : sec < 7200 ? `${Math.floor(sec / 60)}m` : `${Math.floor(sec / 3600)}h`;
}

const TABLE_COLUMNS: Record<Resource, { name: string; type: string; format: string; description: string; priority: number }[]> = {
  pods: [
    { name: 'Name', type: 'string', format: 'name', description: 'Name of the pod', priority: 0 },
    { name: 'Ready', type: 'string', format: '', description: 'ready containers / containers', priority: 0 },
    { name: 'Status', type: 'string', format: '', description: 'The aggregate status of the containers in this pod.', priority: 0 },
    { name: 'Restarts', type: 'string', format: '', description: 'restarts', priority: 0 },
    { name: 'Age', type: 'string', format: '', description: 'creation timestamp', priority: 0 },
    { name: 'IP', type: 'string', format: '', description: 'pod IP', priority: 1 },
    { name: 'Node', type: 'string', format: '', description: 'spec.nodeName', priority: 1 },
  ],
  namespaces: [
    { name: 'Name', type: 'string', format: 'name', description: 'Name of the namespace', priority: 0 },
    { name: 'Status', type: 'string', format: '', description: 'phase', priority: 0 },
    { name: 'Age', type: 'string', format: '', description: 'creation timestamp', priority: 0 },
  ],
};

/** One Table row, as the apiserver's pod/namespace printers produce it (includeObject=Metadata). */
function tableRow(resource: Resource, o: Obj): Obj {
  const m = o.metadata ?? {};
  const cells =
    resource === 'pods'
      ? [m.name, `0/${(o.spec?.containers ?? []).length}`, o.status?.phase ?? 'Pending', '0', age(m.creationTimestamp), o.status?.podIP ?? '<none>', o.spec?.nodeName ?? '<none>']
      : [m.name, o.status?.phase ?? 'Active', age(m.creationTimestamp)];
  return { cells, object: { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: m } };
}

function table(resource: Resource, items: Obj[], metadata: Obj, withColumns = true): Obj {
  return { kind: 'Table', apiVersion: 'meta.k8s.io/v1', metadata, ...(withColumns ? { columnDefinitions: TABLE_COLUMNS[resource] } : {}), rows: items.map((o) => tableRow(resource, o)) };
}

// Discovery documents: what kubectl reads before it lists anything (legacy, non-aggregated form).
const API_VERSIONS = (server: string): Obj => ({ kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: server }] });
const API_GROUPS: Obj = { kind: 'APIGroupList', apiVersion: 'v1', groups: [] };
const CORE_RESOURCES: Obj = {
  kind: 'APIResourceList',
  groupVersion: 'v1',
  resources: [
    { name: 'pods', singularName: 'pod', namespaced: true, kind: 'Pod', verbs: ['get', 'list', 'watch'], shortNames: ['po'], categories: ['all'] },
    { name: 'namespaces', singularName: 'namespace', namespaced: false, kind: 'Namespace', verbs: ['get', 'list', 'watch'], shortNames: ['ns'] },
  ],
};
const VERSION: Obj = { major: '1', minor: '32', gitVersion: 'v1.32.0-fake', gitCommit: '', gitTreeState: 'clean', buildDate: '2026-01-01T00:00:00Z', goVersion: 'go1.23', compiler: 'gc', platform: 'linux/amd64' };

interface LiveWatch {
  resource: Resource;
  namespace?: string;
  nodeName?: string;
  bookmarks: boolean;
  format: Format;
  /** Table watches carry the column definitions in their first event only. */
  sentColumns?: boolean;
  res: http.ServerResponse;
  socket: Socket;
  timer?: NodeJS.Timeout;
  /** With latency set: when this watch's last delayed event goes out (events keep their order). */
  lastAt?: number;
}

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  watch: boolean;
  authorization?: string;
  accept?: string;
}

/** Options for `KubeConfig.loadFromOptions()` pointing at the fake server. */
export interface KubeconfigOptions {
  clusters: { name: string; server: string; skipTLSVerify: boolean }[];
  users: { name: string; token: string }[];
  contexts: { name: string; cluster: string; user: string }[];
  currentContext: string;
}

export interface FakeApiServer {
  url: string;
  kubeconfig: KubeconfigOptions;
  /** Writes a kubeconfig file (JSON is valid YAML) and returns its path. */
  writeKubeconfig(path: string): string;
  addPod(pod: Obj): Obj;
  updatePod(pod: Obj): Obj;
  deletePod(namespace: string, name: string): void;
  addNamespace(ns: Obj | string, labels?: Record<string, string>): Obj;
  updateNamespace(ns: Obj): Obj;
  deleteNamespace(name: string): void;
  /** Forgets history: a watch (or continue) from any version older than now gets 410 Gone. */
  expireResourceVersions(): void;
  /** Destroys every open watch connection mid-stream, as a restarting apiserver or a flaky LB would. */
  dropWatches(): void;
  /** Ends every open watch cleanly (the server-side watch timeout). */
  endWatches(): void;
  /** Sends a BOOKMARK with the current resourceVersion on every watch that asked for bookmarks. */
  sendBookmarks(): void;
  /** The next `count` requests (of `kind`, default any) fail with `status`. */
  failNextRequests(count: number, status?: number, kind?: 'list' | 'watch' | 'any'): void;
  /** Every request fails with `status` (an API server down behind its load balancer) until called with null. */
  setUnavailable(status: number | null): void;
  /**
   * A slow API server (overloaded, or far away): every request is answered after a delay drawn
   * uniformly from [minMs, maxMs], and every event on an open watch reaches the client that much
   * later (in order). null: answer at once again.
   */
  setLatency(latency: { minMs: number; maxMs: number } | null): void;
  requests: RecordedRequest[];
  /** Open watches, optionally of one resource and one `spec.nodeName` field selector (one agent's). */
  openWatches(resource?: Resource, nodeName?: string): number;
  resourceVersion(): string;
  close(): Promise<void>;
}

const key = (o: Obj) => `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

function status(code: number, reason: string, message: string): Obj {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

function parseFieldSelector(sel: string | undefined): { nodeName?: string; error?: string } {
  if (!sel) return {};
  const m = /^spec\.nodeName(==?)(.*)$/.exec(sel);
  if (!m) return { error: `field selector ${JSON.stringify(sel)} not supported by the fake (only spec.nodeName=)` };
  return { nodeName: m[2] };
}

/** A throwaway self-signed certificate for 127.0.0.1 (openssl CLI), for the TLS listener. */
function selfSignedCert(): { key: Buffer; cert: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'shunt-fake-apiserver-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore', timeout: 30_000 });
    return { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * `tls: true` serves HTTPS with a self-signed certificate: client-go (kubectl) never sends a bearer
 * token over plain HTTP, so a faithful token check needs TLS; client-node sends it either way.
 */
export async function startFakeApiServer(opts: { token?: string; tls?: boolean } = {}): Promise<FakeApiServer> {
  const token = opts.token ?? 'fake-token';
  const store: Record<Resource, Map<string, Obj>> = { pods: new Map(), namespaces: new Map() };
  const history: Change[] = [];
  let rv = 1;
  let compactedBefore = 0;
  const watches = new Set<LiveWatch>();
  const failures: { status: number; kind: 'list' | 'watch' | 'any' }[] = [];
  const continuations = new Map<string, { items: Obj[]; rv: number }>();
  const requests: RecordedRequest[] = [];
  let unavailable: number | null = null;
  let latency: { minMs: number; maxMs: number } | null = null;
  const delay = () => (latency ? latency.minMs + Math.random() * (latency.maxMs - latency.minMs) : 0);

  const matches = (w: { resource: Resource; namespace?: string; nodeName?: string }, o: Obj | undefined): boolean => {
    if (!o) return false;
    if (w.namespace !== undefined && o.metadata?.namespace !== w.namespace) return false;
    if (w.nodeName !== undefined && (o.spec?.nodeName ?? '') !== w.nodeName) return false;
    return true;
  };

  // What a watcher with this selector sees for one change, as a real apiserver computes it.
  const eventFor = (w: { resource: Resource; namespace?: string; nodeName?: string }, c: Change): { type: WatchType; object: Obj } | null => {
    if (c.resource !== w.resource) return null;
    const now = c.type !== 'DELETED' && matches(w, c.object);
    const before = c.type === 'ADDED' ? false : matches(w, c.previous);
    if (c.type === 'DELETED') return before ? { type: 'DELETED', object: c.object } : null;
    if (now && before) return { type: 'MODIFIED', object: c.object };
    if (now) return { type: 'ADDED', object: c.object };
    if (before) return { type: 'DELETED', object: c.object };
    return null;
  };

  const send = (w: LiveWatch, type: string, object: Obj, delayed = false) => {
    const d = delayed ? delay() : 0;
    if (d > 0) {
      const at = Math.max(Date.now() + d, w.lastAt ?? 0);
      w.lastAt = at;
      setTimeout(() => send(w, type, object), at - Date.now());
      return;
    }
    if (w.res.writableEnded || w.res.destroyed) return;
    let out = object;
    if (w.format === 'table' && (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED')) {
      out = table(w.resource, [object], { resourceVersion: object.metadata?.resourceVersion }, !w.sentColumns);
      w.sentColumns = true;
    }
    w.res.write(JSON.stringify({ type, object: out }) + '\n');
  };

  const record = (resource: Resource, type: WatchType, object: Obj, previous?: Obj) => {
    const change: Change = { rv, resource, type, object: clone(object), previous: previous && clone(previous) };
    history.push(change);
    for (const w of watches) {
      const ev = eventFor(w, change);
      if (ev) send(w, ev.type, ev.object, true);
    }
  };

  const put = (resource: Resource, input: Obj, mode: 'add' | 'update'): Obj => {
    const o = clone(input);
    o.metadata = o.metadata ?? {};
    if (resource === 'pods') {
      o.apiVersion = 'v1';
      o.kind = 'Pod';
      o.metadata.namespace = o.metadata.namespace ?? 'default';
    } else {
      o.apiVersion = 'v1';
      o.kind = 'Namespace';
      delete o.metadata.namespace;
    }
    if (!o.metadata.name) throw new Error('fake apiserver: object needs metadata.name');
    const k = key(o);
    const prev = store[resource].get(k);
    if (mode === 'add' && prev) throw new Error(`fake apiserver: ${resource} ${k} already exists`);
    if (mode === 'update' && !prev) throw new Error(`fake apiserver: ${resource} ${k} does not exist`);
    o.metadata.uid = prev?.metadata?.uid ?? o.metadata.uid ?? randomUUID();
    o.metadata.creationTimestamp = prev?.metadata?.creationTimestamp ?? new Date().toISOString();
    rv += 1;
    o.metadata.resourceVersion = String(rv);
    store[resource].set(k, o);
    record(resource, prev ? 'MODIFIED' : 'ADDED', o, prev);
    return clone(o);
  };

  const remove = (resource: Resource, k: string) => {
    const prev = store[resource].get(k);
    if (!prev) throw new Error(`fake apiserver: ${resource} ${k} does not exist`);
    store[resource].delete(k);
    rv += 1;
    const gone = clone(prev);
    gone.metadata!.resourceVersion = String(rv);
    record(resource, 'DELETED', gone, prev);
  };

  const json = (res: http.ServerResponse, code: number, body: Obj, contentType = 'application/json') => {
    const text = JSON.stringify(body);
    res.writeHead(code, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  };

  const route = (path: string): { resource: Resource; namespace?: string } | null => {
    if (path === '/api/v1/pods') return { resource: 'pods' };
    if (path === '/api/v1/namespaces') return { resource: 'namespaces' };
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/pods$/.exec(path);
    return m ? { resource: 'pods', namespace: decodeURIComponent(m[1] as string) } : null;
  };

  const handleList = (res: http.ServerResponse, target: { resource: Resource; namespace?: string; nodeName?: string }, q: Record<string, string>, format: Format) => {
    const limit = q.limit ? Number(q.limit) : 0;
    let items: Obj[];
    let listRv: number;
    let offset = 0;
    if (q.continue) {
      const cont = continuations.get(q.continue);
      if (!cont || cont.rv < compactedBefore) {
        return json(res, 410, status(410, 'Expired', 'The provided continue parameter is too old to display a consistent list result.'));
      }
      ({ items, rv: listRv } = cont);
      offset = Number(q.continue.split(':')[1]);
    } else {
      items = [...store[target.resource].values()].filter((o) => matches(target, o)).map(clone);
      listRv = rv;
    }
    const page = limit > 0 ? items.slice(offset, offset + limit) : items.slice(offset);
    const next = limit > 0 && offset + limit < items.length ? `${randomUUID()}:${offset + limit}` : undefined;
    if (next) continuations.set(next, { items, rv: listRv });
    const metadata = { resourceVersion: String(listRv), ...(next ? { continue: next } : {}) };
    if (format === 'table') return json(res, 200, table(target.resource, page, metadata), TABLE_CONTENT_TYPE);
    json(res, 200, {
      apiVersion: 'v1',
      kind: target.resource === 'pods' ? 'PodList' : 'NamespaceList',
      metadata: { resourceVersion: String(listRv), ...(next ? { continue: next } : {}) },
      items: page,
    });
  };

  const handleWatch = (req: http.IncomingMessage, res: http.ServerResponse, target: { resource: Resource; namespace?: string; nodeName?: string }, q: Record<string, string>, format: Format) => {
    res.writeHead(200, { 'Content-Type': format === 'table' ? TABLE_CONTENT_TYPE : 'application/json', 'Transfer-Encoding': 'chunked' });
    // Without this the client's fetch() waits for the first byte and the watch promise never resolves.
    res.flushHeaders();
    const w: LiveWatch = { ...target, bookmarks: q.allowWatchBookmarks === 'true', format, res, socket: req.socket };
    const from = q.resourceVersion;
    if (from && from !== '0') {
      const since = Number(from);
      if (!Number.isFinite(since) || since < compactedBefore) {
        send(w, 'ERROR', status(410, 'Expired', `too old resource version: ${from} (${compactedBefore})`));
        res.end();
        return;
      }
      for (const c of history) {
        if (c.rv <= since) continue;
        const ev = eventFor(w, c);
        if (ev) send(w, ev.type, ev.object);
      }
    } else {
      // No version: a real apiserver starts "now" with a synthetic ADDED for every current object.
      for (const o of store[target.resource].values()) if (matches(target, o)) send(w, 'ADDED', o);
    }
    watches.add(w);
    const timeout = Number(q.timeoutSeconds);
    if (timeout > 0) w.timer = setTimeout(() => res.end(), timeout * 1000);
    const forget = () => {
      if (w.timer) clearTimeout(w.timer);
      watches.delete(w);
    };
    res.on('close', forget);
    req.on('close', forget);
  };

  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://fake');
    const q = Object.fromEntries(url.searchParams.entries());
    const isWatch = q.watch === 'true' || q.watch === '1';
    requests.push({ method: req.method ?? 'GET', path: url.pathname, query: q, watch: isWatch, authorization: req.headers.authorization, accept: req.headers.accept });
    const d = delay();
    if (d > 0) setTimeout(() => serve(req, res, url, q, isWatch), d);
    else serve(req, res, url, q, isWatch);
  };
  const serve = (req: http.IncomingMessage, res: http.ServerResponse, url: URL, q: Record<string, string>, isWatch: boolean) => {
    if (res.destroyed) return; // the client gave up while the slow server was thinking
    if (unavailable !== null) return json(res, unavailable, status(unavailable, 'ServiceUnavailable', 'the fake API server is down'));
    const failAt = failures.findIndex((f) => f.kind === 'any' || f.kind === (isWatch ? 'watch' : 'list'));
    if (failAt >= 0) {
      const f = failures.splice(failAt, 1)[0] as { status: number };
      return json(res, f.status, status(f.status, 'InternalError', 'injected failure'));
    }
    if (req.headers.authorization !== `Bearer ${token}`) return json(res, 401, status(401, 'Unauthorized', 'Unauthorized'));
    if (req.method !== 'GET') return json(res, 405, status(405, 'MethodNotAllowed', 'the fake only serves GET'));
    // Discovery and version, as kubectl reads them first (legacy discovery: kubectl falls back to it
    // when the answer is plain application/json rather than an aggregated APIGroupDiscoveryList).
    if (url.pathname === '/version') return json(res, 200, VERSION);
    if (url.pathname === '/api') return json(res, 200, API_VERSIONS(`127.0.0.1:${(server.address() as AddressInfo).port}`));
    if (url.pathname === '/apis') return json(res, 200, API_GROUPS);
    if (url.pathname === '/api/v1') return json(res, 200, CORE_RESOURCES);
    const r = route(url.pathname);
    if (!r) return json(res, 404, status(404, 'NotFound', `no route for ${url.pathname}`));
    const sel = parseFieldSelector(q.fieldSelector);
    if (sel.error) return json(res, 400, status(400, 'BadRequest', sel.error));
    const target = { ...r, nodeName: r.resource === 'pods' ? sel.nodeName : undefined };
    const format = wantedFormat(req.headers.accept);
    if (isWatch) handleWatch(req, res, target, q, format);
    else handleList(res, target, q, format);
  };
  const server = opts.tls ? https.createServer(selfSignedCert(), handler) : http.createServer(handler);

  const sockets = new Set<Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const kubeconfig: KubeconfigOptions = {
    clusters: [{ name: 'fake', server: url, skipTLSVerify: true }],
    users: [{ name: 'fake', token }],
    contexts: [{ name: 'fake', cluster: 'fake', user: 'fake' }],
    currentContext: 'fake',
  };

  return {
    url,
    kubeconfig,
    writeKubeconfig(path) {
      const doc = {
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'fake', cluster: { server: url, 'insecure-skip-tls-verify': true } }],
        users: [{ name: 'fake', user: { token } }],
        contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'fake' } }],
        'current-context': 'fake',
      };
      writeFileSync(path, JSON.stringify(doc, null, 2));
      return path;
    },
    addPod: (pod) => put('pods', pod, 'add'),
    updatePod: (pod) => put('pods', pod, 'update'),
    deletePod: (namespace, name) => remove('pods', `${namespace}/${name}`),
    addNamespace: (ns, labels) => put('namespaces', typeof ns === 'string' ? { metadata: { name: ns, labels: labels ?? {} } } : ns, 'add'),
    updateNamespace: (ns) => put('namespaces', ns, 'update'),
    deleteNamespace: (name) => remove('namespaces', `/${name}`),
    expireResourceVersions() {
      // Like an etcd compaction at the current revision: older versions are gone, the current one is still
      // watchable (a list right after compaction must be able to start a watch from its own version).
      compactedBefore = rv;
      history.length = 0;
    },
    dropWatches() {
      for (const w of [...watches]) w.socket.destroy();
    },
    endWatches() {
      for (const w of [...watches]) w.res.end();
    },
    sendBookmarks() {
      for (const w of watches) {
        if (w.bookmarks) send(w, 'BOOKMARK', { kind: w.resource === 'pods' ? 'Pod' : 'Namespace', apiVersion: 'v1', metadata: { resourceVersion: String(rv) } });
      }
    },
    setUnavailable(code) {
      unavailable = code;
    },
    setLatency(l) {
      if (l && !(l.minMs >= 0 && l.maxMs >= l.minMs)) throw new Error(`fake apiserver: latency needs 0 <= minMs <= maxMs, got ${JSON.stringify(l)}`);
      latency = l;
    },
    failNextRequests(count, code = 500, kind = 'any') {
      for (let i = 0; i < count; i++) failures.push({ status: code, kind });
    },
    requests,
    openWatches: (resource, nodeName) => [...watches].filter((w) => (!resource || w.resource === resource) && (nodeName === undefined || w.nodeName === nodeName)).length,
    resourceVersion: () => String(rv),
    close() {
      for (const w of [...watches]) w.res.end();
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
