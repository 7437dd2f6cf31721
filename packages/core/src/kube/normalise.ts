// Copies the fields shunt reads out of whatever the source produced (client-node model objects with Date
// fields, raw watch JSON, or a hand-written pods file) into plain KubePod / KubeNamespace data, so both
// sources hand the same shapes on, diffs are not fooled by representation, and memory holds only what we use.
import type { KubeContainer, KubeNamespace, KubeObjectMeta, KubePod, PodExtras } from './types';
import type { PodRef } from '../types';

type Loose = Record<string, unknown> | undefined | null;

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : v instanceof Date ? v.toISOString() : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

function stringMap(v: unknown): Record<string, string> | undefined {
  if (!isObj(v)) return undefined;
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) out[k] = typeof val === 'string' ? val : String(val);
  return out;
}

// A copy without the undefined fields, not `delete` on the object itself: a deleted property
// turns a V8 object into a dictionary (~450 bytes for a 3-field object instead of ~40), and
// the pod sources keep these objects for every pod of the node.
function dropUndefined<T extends object>(o: T): T {
  const out = {} as T;
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

function meta(m: Loose): KubeObjectMeta {
  if (!isObj(m)) return {};
  return dropUndefined({
    name: str(m.name),
    namespace: str(m.namespace),
    uid: str(m.uid),
    resourceVersion: str(m.resourceVersion),
    labels: stringMap(m.labels),
    annotations: stringMap(m.annotations),
    deletionTimestamp: str(m.deletionTimestamp),
  });
}

function container(c: unknown): KubeContainer | undefined {
  if (!isObj(c) || typeof c.name !== 'string') return undefined;
  const sc = isObj(c.securityContext) ? dropUndefined({ runAsUser: num(c.securityContext.runAsUser), runAsGroup: num(c.securityContext.runAsGroup) }) : undefined;
  return dropUndefined({
    name: c.name,
    args: Array.isArray(c.args) ? c.args.map(String) : undefined,
    env: Array.isArray(c.env)
      ? c.env.filter(isObj).map((e) => dropUndefined({ name: String(e.name), value: str(e.value) }))
      : undefined,
    restartPolicy: str(c.restartPolicy),
    securityContext: sc && Object.keys(sc).length > 0 ? sc : undefined,
  });
}

const containers = (v: unknown): KubeContainer[] | undefined =>
  Array.isArray(v) ? v.map(container).filter((c): c is KubeContainer => c !== undefined) : undefined;

export function pickPod(o: unknown): KubePod {
  if (!isObj(o)) return {};
  const spec = isObj(o.spec) ? o.spec : {};
  const st = isObj(o.status) ? o.status : {};
  return {
    metadata: meta(o.metadata as Loose),
    spec: dropUndefined({
      nodeName: str(spec.nodeName),
      hostNetwork: typeof spec.hostNetwork === 'boolean' ? spec.hostNetwork : undefined,
      serviceAccountName: str(spec.serviceAccountName),
      containers: containers(spec.containers),
      initContainers: containers(spec.initContainers),
      dnsPolicy: str(spec.dnsPolicy),
      dnsConfig:
        isObj(spec.dnsConfig) && Array.isArray(spec.dnsConfig.nameservers) ? { nameservers: spec.dnsConfig.nameservers.map(String) } : undefined,
    }),
    status: dropUndefined({
      phase: str(st.phase),
      podIP: str(st.podIP),
      podIPs: Array.isArray(st.podIPs) ? st.podIPs.filter(isObj).map((p) => ({ ip: String(p.ip) })) : undefined,
    }),
  };
}

export function pickNamespace(o: unknown): KubeNamespace {
  return isObj(o) ? { metadata: meta(o.metadata as Loose) } : {};
}

/** The `shunt:` key of a pods-file entry (node-local facts the API object cannot carry). */
export function pickExtras(o: unknown): PodExtras {
  if (!isObj(o) || !isObj(o.shunt)) return {};
  const s = o.shunt;
  // Values are kept as given; interpretPod validates them and rejects the pod naming the field.
  return dropUndefined({
    netnsPath: s.netnsPath as string | undefined,
    cgroupPath: s.cgroupPath as string | undefined,
    hostVeth: s.hostVeth as string | undefined,
    netnsCookie: s.netnsCookie === undefined ? undefined : (String(s.netnsCookie) as string),
  });
}

/** uid when present, else namespace/name (a pods file may omit uids). */
export function podRefOf(pod: KubePod): PodRef {
  const namespace = pod.metadata?.namespace || 'default';
  const name = pod.metadata?.name ?? '';
  return { uid: pod.metadata?.uid || `${namespace}/${name}`, namespace, name };
}
