// The one validation step between a pod source and everything else: a raw Pod or Namespace object (API
// watch JSON, client-node model object, or a pods-file entry) is checked against the fields shunt reads
// — type, range, size, encoding — before normalisation, the mesh profile or any backend sees it. A
// value Kubernetes itself would refuse (runAsUser 4294967296, a 10,000-char name, a lone surrogate, a
// third pod IP) makes the pod `rejected` with one reason naming pod, field and value; it never throws.
//
// zod (not ajv, not hand-written checks): the schema is TypeScript, so the checked shape and the types
// cannot drift; each issue carries the path of the offending field for the message; unknown fields
// pass through untouched (we validate only what we read, Kubernetes owns the rest).
// Limits follow Kubernetes' own validation (pkg/apis/core/validation, apimachinery/pkg/util/validation),
// so anything a real API server accepts is accepted here.
import { z } from 'zod';
import { PodRejectedError } from '../errors';
import { parseIp } from '../netaddr';
import type { PodRef } from '../types';
import { pickExtras, pickNamespace, pickPod, podRefOf } from './normalise';
import type { KubeNamespace, KubePod, PodExtras } from './types';

/** etcd's default request limit: no stored Kubernetes object is larger. */
export const MAX_OBJECT_BYTES = 1_572_864;
/** Kubernetes' TotalAnnotationSizeLimitB. */
export const MAX_ANNOTATIONS_BYTES = 256 * 1024;
/** Longest pod uid any backend stores (sockops pod_meta.uid); a Kubernetes uid is a 36-char UUID. */
export const MAX_UID_BYTES = 48;
/** Linux uid/gid as Kubernetes validates runAsUser/runAsGroup (IsValidUserID: 0..MaxInt32). */
export const MAX_ID = 2_147_483_647;

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const UID = /^[A-Za-z0-9][-A-Za-z0-9_.:/]*$/;
// Linux IFNAMSIZ - 1, and the characters dev_valid_name() refuses.
const IFNAME = /^[^\s/:\0]{1,15}$/;

// String.prototype.isWellFormed is ES2024 (Node 20 has it, our lib target does not).
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const isWellFormed = (s: string): boolean => !/[\uD800-\uDFFF]/.test(s) || s.match(LONE_SURROGATE) === null;
const toWellFormed = (s: string): string => s.replace(LONE_SURROGATE, '\uFFFD');

/** Valid Unicode (no lone surrogates): everything we keep must survive UTF-8 encoding unchanged. */
const text = (max: number) =>
  z
    .string()
    .max(max, `longer than ${max} characters`)
    .refine(isWellFormed, 'not valid Unicode (lone surrogate)');

const dnsLabel = text(63).regex(DNS_LABEL, 'not a DNS-1123 label (lower-case alphanumerics and "-", at most 63)');
const dnsSubdomain = text(253).regex(DNS_SUBDOMAIN, 'not a DNS-1123 subdomain (lower-case alphanumerics, "-" and ".", at most 253)');

function qualifiedKey(k: string): string | undefined {
  if (!isWellFormed(k)) return 'not valid Unicode';
  const slash = k.lastIndexOf('/');
  const prefix = slash >= 0 ? k.slice(0, slash) : undefined;
  const name = slash >= 0 ? k.slice(slash + 1) : k;
  if (prefix !== undefined && (prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) return 'prefix is not a DNS-1123 subdomain';
  if (name.length === 0 || name.length > 63 || !QUALIFIED_NAME.test(name)) return 'name part is not a qualified name (alphanumerics, "-", "_", ".", at most 63)';
  return undefined;
}

const key = z.string().superRefine((k, ctx) => {
  const bad = qualifiedKey(k);
  if (bad) ctx.addIssue({ code: 'custom', message: `key ${JSON.stringify(k.slice(0, 80))}: ${bad}` });
});

const labels = z.record(key, text(63).regex(LABEL_VALUE, 'not a label value (alphanumerics, "-", "_", ".", at most 63)'));
const annotations = z.record(key, z.string().refine(isWellFormed, 'not valid Unicode (lone surrogate)')).superRefine((a, ctx) => {
  let size = 0;
  for (const [k, v] of Object.entries(a)) size += k.length + v.length;
  if (size > MAX_ANNOTATIONS_BYTES) ctx.addIssue({ code: 'custom', message: `annotations total ${size} bytes, more than ${MAX_ANNOTATIONS_BYTES}` });
});

// client-node gives Date objects, watch JSON and files give RFC 3339 text.
const timestamp = z.unknown().refine((v) => v === undefined || v === null || v instanceof Date || (typeof v === 'string' && v.length <= 64 && isWellFormed(v)), 'not a timestamp');
const id = z.int(`not an integer uid/gid`).min(0, 'must be 0..2147483647').max(MAX_ID, 'must be 0..2147483647');
const ipText = text(64).refine((s) => parseIp(s).ok, 'not an IP address');

const container = z.looseObject({
  name: dnsLabel,
  image: text(4096).nullish(),
  args: z.array(text(MAX_OBJECT_BYTES)).nullish(),
  env: z
    .array(
      z.looseObject({
        name: text(4096).min(1, 'must not be empty'),
        value: z.string().refine(isWellFormed, 'not valid Unicode (lone surrogate)').nullish(),
      }),
    )
    .nullish(),
  restartPolicy: z.enum(['Always', 'OnFailure', 'Never']).nullish(),
  securityContext: z.looseObject({ runAsUser: id.nullish(), runAsGroup: id.nullish() }).nullish(),
});

const objectMeta = {
  namespace: dnsLabel.nullish(),
  resourceVersion: text(256).nullish(),
  labels: labels.nullish(),
  annotations: annotations.nullish(),
  deletionTimestamp: timestamp.nullish(),
};

const podSchema = z.looseObject({
  metadata: z.looseObject({
    ...objectMeta,
    name: dnsSubdomain,
    uid: text(MAX_UID_BYTES).regex(UID, 'not a uid (alphanumerics and "-_.:/")').nullish(),
  }),
  spec: z
    .looseObject({
      nodeName: dnsSubdomain.nullish(),
      hostNetwork: z.boolean().nullish(),
      containers: z.array(container).nullish(),
      initContainers: z.array(container).nullish(),
    })
    .nullish(),
  status: z
    .looseObject({
      phase: z.enum(['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown']).nullish(),
      podIP: ipText.nullish(),
      // Kubernetes: at most one address per family.
      podIPs: z.array(z.looseObject({ ip: ipText })).max(2, 'at most 2 entries (one per family)').nullish(),
    })
    .nullish(),
});

const absPath = text(4096)
  .refine((s) => s.startsWith('/'), 'must be an absolute path')
  .refine((s) => !s.includes('\0'), 'must not contain NUL');

/** The `shunt:` key of a pods-file entry: node-local facts. */
const extrasSchema = z
  .looseObject({
    netnsPath: absPath.nullish(),
    cgroupPath: absPath.nullish(),
    hostVeth: text(15).regex(IFNAME, 'not an interface name (1..15 characters, no space, "/" or ":")').nullish(),
    // A decimal string (a u64 does not fit a JSON number) or a safe non-negative integer.
    netnsCookie: z
      .unknown()
      .refine(
        (v) =>
          v === undefined ||
          v === null ||
          (typeof v === 'string' && /^[0-9]{1,20}$/.test(v) && BigInt(v) <= 0xffff_ffff_ffff_ffffn) ||
          (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0),
        'must be a decimal number 0..2^64-1',
      )
      .optional(),
  })
  .nullish();

const namespaceSchema = z.looseObject({ metadata: z.looseObject({ ...objectMeta, name: dnsLabel }) });

export type PodValidation =
  | { ok: true; ref: PodRef; pod: KubePod; extras: PodExtras }
  | { ok: false; ref: PodRef; error: PodRejectedError };

export type NamespaceValidation = { ok: true; namespace: KubeNamespace } | { ok: false; name: string; field: string; reason: string };

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A value for a message: short, printable, and never throws (BigInt, cycles, symbols). */
export function displayValue(v: unknown): string {
  let s: string;
  if (typeof v === 'string') s = v;
  else if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean' || v === undefined || v === null) s = String(v);
  else if (v instanceof Date) s = Number.isNaN(v.getTime()) ? 'Invalid Date' : v.toISOString();
  else if (Array.isArray(v)) s = `[array of ${v.length}]`;
  else if (typeof v === 'object') s = `{object with ${Object.keys(v).length} keys}`;
  else s = typeof v;
  s = toWellFormed(s);
  return s.length > 80 ? `${s.slice(0, 80)}… (${s.length} chars)` : s;
}

/** `spec.containers[1].securityContext.runAsUser`, `metadata.annotations["sidecar.istio.io/status"]`. */
function fieldPath(path: readonly PropertyKey[]): string {
  return path
    .map((p, i) => {
      if (typeof p === 'number') return `[${p}]`;
      const k = displayValue(String(p));
      return /^[A-Za-z0-9_]+$/.test(k) ? `${i === 0 ? '' : '.'}${k}` : `[${JSON.stringify(k)}]`;
    })
    .join('');
}

/** zod nests the reason of a bad record key inside an `invalid_key` issue; surface it. */
function issueMessage(issue: z.core.$ZodIssue): string {
  if (issue.code === 'invalid_key' && issue.issues.length > 0) return issue.issues[0]!.message;
  return issue.message;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let cur: unknown = root;
  for (const p of path) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[p];
  }
  return cur;
}

/**
 * The pod's identity as best it can be read, for keying and for messages, even when the entry is
 * invalid: strings are taken as given (made printable), anything else falls back to `fallbackName`.
 */
export function bestEffortRef(raw: unknown, fallbackName: string): PodRef {
  const m = isObj(raw) && isObj(raw.metadata) ? raw.metadata : {};
  const s = (v: unknown): string | undefined =>
    typeof v !== 'string' || v.length === 0 ? undefined : v.length <= 253 && isWellFormed(v) ? v : displayValue(v);
  const namespace = s(m.namespace) ?? 'default';
  const name = s(m.name) ?? fallbackName;
  return { uid: s(m.uid) ?? `${namespace}/${name}`, namespace, name };
}

function firstIssue(err: z.ZodError, raw: unknown, prefix: string): { field: string; value: string; reason: string } {
  const issue = err.issues[0]!;
  // A record-key issue points at the map; name the key's map, the message names the key.
  const path = [...issue.path];
  const value = valueAt(raw, path);
  const more = err.issues.length > 1 ? ` (and ${err.issues.length - 1} more problem${err.issues.length > 2 ? 's' : ''})` : '';
  return { field: `${prefix}${fieldPath(path)}` || 'pod', value: displayValue(value), reason: `${issueMessage(issue)}${more}` };
}

/**
 * Validates a raw pod object; on success returns it normalised (pickPod/pickExtras), on failure a
 * rejection naming pod, field and value. `fallbackName` names an entry without a usable name (a pods
 * file uses its position). `sizeBytes`, when the caller knows it, is checked against MAX_OBJECT_BYTES.
 */
export function validatePod(raw: unknown, opts: { fallbackName?: string; sizeBytes?: number; extras?: boolean } = {}): PodValidation {
  const ref = bestEffortRef(raw, opts.fallbackName ?? '<unnamed>');
  const label = `${ref.namespace}/${ref.name}`;
  const reject = (field: string, value: string, reason: string): PodValidation => ({ ok: false, ref, error: new PodRejectedError(label, field, value, reason) });
  try {
    if (!isObj(raw)) return reject('pod', displayValue(raw), 'not an object');
    if (opts.sizeBytes !== undefined && opts.sizeBytes > MAX_OBJECT_BYTES) {
      return reject('pod', `${opts.sizeBytes} bytes`, `larger than ${MAX_OBJECT_BYTES} bytes (no Kubernetes object is)`);
    }
    const r = podSchema.safeParse(raw);
    if (!r.success) {
      const { field, value, reason } = firstIssue(r.error, raw, '');
      return reject(field, value, reason);
    }
    if (opts.extras !== false) {
      const e = extrasSchema.safeParse(raw.shunt);
      if (!e.success) {
        const { field, value, reason } = firstIssue(e.error, raw.shunt, 'shunt.');
        return reject(field, value, reason);
      }
    }
    const pod = pickPod(raw);
    // Container names are unique across containers and init containers (Kubernetes checks this too);
    // membership and identity rules look containers up by name.
    const seen = new Set<string>();
    for (const [list, cs] of [['spec.containers', pod.spec?.containers], ['spec.initContainers', pod.spec?.initContainers]] as const) {
      for (const [i, c] of (cs ?? []).entries()) {
        if (seen.has(c.name)) return reject(`${list}[${i}].name`, c.name, 'duplicate container name');
        seen.add(c.name);
      }
    }
    const uid = pod.metadata?.uid;
    if (!uid && Buffer.byteLength(ref.uid) > MAX_UID_BYTES) {
      return reject('metadata.uid', '', `required when namespace/name (${Buffer.byteLength(ref.uid)} bytes) is longer than ${MAX_UID_BYTES} bytes`);
    }
    return { ok: true, ref: podRefOf(pod), pod, extras: opts.extras === false ? {} : pickExtras(raw) };
  } catch (err) {
    // Getters that throw, proxies, exotic objects: still one rejection, never an exception.
    return reject('pod', '', `cannot be read: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Validates a raw Namespace object (only its name and labels matter to shunt). */
export function validateNamespace(raw: unknown): NamespaceValidation {
  const name = isObj(raw) && isObj(raw.metadata) && typeof raw.metadata.name === 'string' ? displayValue(raw.metadata.name) : '<unnamed>';
  try {
    const r = namespaceSchema.safeParse(raw);
    if (!r.success) {
      const { field, value, reason } = firstIssue(r.error, raw, '');
      return { ok: false, name, field, reason: `${field}=${JSON.stringify(value)}: ${reason}` };
    }
    return { ok: true, namespace: pickNamespace(raw) };
  } catch (err) {
    return { ok: false, name, field: 'namespace', reason: `cannot be read: ${err instanceof Error ? err.message : String(err)}` };
  }
}
