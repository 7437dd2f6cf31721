// The only module that touches @kubernetes/client-node. The rest of the core sees the small KubeApi
// interface below, so the client can be replaced and the core stays CommonJS.
//
// client-node 1.x is ESM-only. TypeScript (module: commonjs) would compile `import()` into `require()`,
// which Node 20 before 20.19 cannot do for ESM, so the import is built at run time. Hosts that sandbox
// dynamic import (jest's CommonJS runtime refuses it without --experimental-vm-modules) get the same
// import through Node's main-context loader instead.
import type * as K8s from '@kubernetes/client-node';
import { pathToFileURL } from 'node:url';
import { ShuntError, errorMessage } from '../errors';

export interface KubeListPage {
  items: unknown[];
  resourceVersion: string;
  continueToken?: string;
}

export interface KubeWatchHandle {
  abort(): void;
}

export type KubeWatchPath = '/api/v1/pods' | '/api/v1/namespaces';

export interface KubeApi {
  listPods(opts: { fieldSelector?: string; limit?: number; continueToken?: string }): Promise<KubeListPage>;
  listNamespaces(opts: { limit?: number; continueToken?: string }): Promise<KubeListPage>;
  /** Streams watch events until `onDone` (null on a clean end). Never throws; failures go to `onDone`. */
  watch(
    path: KubeWatchPath,
    query: Record<string, string | number | boolean | undefined>,
    onEvent: (type: string, object: unknown) => void,
    onDone: (err: unknown) => void,
  ): Promise<KubeWatchHandle>;
}

/** Options accepted by KubeConfig.loadFromOptions (clusters, users, contexts, currentContext). */
export type KubeconfigOptions = object;

export interface KubeConnection {
  /** Path of a kubeconfig file, or kubeconfig options; neither means the client's default lookup. */
  kubeconfig?: string | KubeconfigOptions;
  /** Use the pod's service account (KUBERNETES_SERVICE_HOST, /var/run/secrets/…). */
  inCluster?: boolean;
}

/** An HTTP-level failure from the API server; `status` is the HTTP or Status code when known. */
export class KubeApiError extends ShuntError {
  readonly status?: number;
  constructor(message: string, status?: number, cause?: unknown) {
    super('SOURCE', message, { cause });
    this.status = status;
  }
}

type ClientModule = typeof K8s;

const importEsm = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<unknown>;

async function importInMainContext(url: string): Promise<unknown> {
  const vm = await import('node:vm');
  const loader = (vm.constants as unknown as { USE_MAIN_CONTEXT_DEFAULT_LOADER?: unknown } | undefined)?.USE_MAIN_CONTEXT_DEFAULT_LOADER;
  if (!loader) throw new ShuntError('SOURCE', 'this Node.js cannot import ES modules from a sandboxed CommonJS host');
  const script = new vm.Script('(url) => import(url)', { importModuleDynamically: loader as never });
  return (script.runInThisContext() as (u: string) => Promise<unknown>)(url);
}

let clientModule: Promise<ClientModule> | undefined;

export function loadClientModule(): Promise<ClientModule> {
  clientModule ??= (async () => {
    // Resolve here so the import does not depend on the process's working directory.
    const url = pathToFileURL(require.resolve('@kubernetes/client-node')).href;
    try {
      return (await importEsm(url)) as ClientModule;
    } catch (err) {
      const code = (err as { code?: string }).code ?? '';
      if (!code.startsWith('ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING')) throw err;
      return (await importInMainContext(url)) as ClientModule;
    }
  })();
  return clientModule;
}

function statusOf(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown };
  if (typeof e?.code === 'number') return e.code;
  if (typeof e?.statusCode === 'number') return e.statusCode;
  return undefined;
}

/** The API server's own words (a Status object in the body) rather than the client's generic text. */
function describe(err: unknown): string {
  const body = (err as { body?: unknown })?.body;
  if (typeof body === 'string') {
    try {
      const s = JSON.parse(body) as { reason?: string; message?: string };
      if (s.message) return `${s.reason ? `${s.reason}: ` : ''}${s.message}`;
    } catch {
      // not JSON: fall through to the error's own message
    }
  }
  return errorMessage(err).split('\n')[0] ?? '';
}

function wrap(what: string, err: unknown): KubeApiError {
  const status = statusOf(err);
  return new KubeApiError(`${what}: ${status ? `HTTP ${status} ` : ''}${describe(err)}`, status, err);
}

function page(list: { items?: unknown[]; metadata?: { resourceVersion?: string; _continue?: string } }): KubeListPage {
  return { items: list.items ?? [], resourceVersion: list.metadata?.resourceVersion ?? '', continueToken: list.metadata?._continue || undefined };
}

export async function createKubeApi(conn: KubeConnection): Promise<KubeApi> {
  const k8s = await loadClientModule();
  const kc = new k8s.KubeConfig();
  try {
    if (conn.inCluster) kc.loadFromCluster();
    else if (typeof conn.kubeconfig === 'string') kc.loadFromFile(conn.kubeconfig);
    else if (conn.kubeconfig) kc.loadFromOptions(conn.kubeconfig);
    else kc.loadFromDefault();
  } catch (err) {
    throw new ShuntError('CONFIG', `kubeconfig ${typeof conn.kubeconfig === 'string' ? conn.kubeconfig : ''}: ${errorMessage(err)}`, { cause: err });
  }
  if (!kc.getCurrentCluster()) throw new ShuntError('CONFIG', 'kubeconfig has no current cluster');
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const watcher = new k8s.Watch(kc);
  return {
    async listPods({ fieldSelector, limit, continueToken }) {
      try {
        return page(await core.listPodForAllNamespaces({ fieldSelector, limit, _continue: continueToken }));
      } catch (err) {
        throw wrap('list pods', err);
      }
    },
    async listNamespaces({ limit, continueToken }) {
      try {
        return page(await core.listNamespace({ limit, _continue: continueToken }));
      } catch (err) {
        throw wrap('list namespaces', err);
      }
    },
    async watch(path, query, onEvent, onDone) {
      try {
        const controller = await watcher.watch(path, query, (type, obj) => onEvent(type, obj), (err) =>
          onDone(err ? wrap(`watch ${path}`, err) : null),
        );
        return { abort: () => controller.abort() };
      } catch (err) {
        onDone(wrap(`watch ${path}`, err));
        return { abort: () => undefined };
      }
    },
  };
}
