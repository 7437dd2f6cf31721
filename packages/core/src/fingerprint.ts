// A stable digest of what a backend installs for a pod. Backends may use it directly for
// `fingerprint()` (and store it with the installed state so `observe()` can report it back).
import { createHash } from 'node:crypto';
import type { MeshPod } from './types';

/** JSON with sorted keys, so equal data gives equal text whatever the construction order. */
export function stableStringify(v: unknown): string {
  if (v === undefined) return 'null';
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(stableStringify).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${stableStringify(o[k])}`)
    .join(',')}}`;
}

/** Digest of every MeshPod field that changes what gets installed (not names or explanations). */
export function meshPodFingerprint(pod: MeshPod, extra?: unknown): string {
  const relevant = {
    membership: pod.membership,
    ips: pod.ips,
    netnsPath: pod.netnsPath,
    netnsCookie: pod.netnsCookie,
    cgroupPath: pod.cgroupPath,
    hostVeth: pod.hostVeth,
    interceptionMode: pod.interceptionMode,
    proxy: pod.proxy,
    traffic: pod.traffic,
    extra,
  };
  return createHash('sha256').update(stableStringify(relevant)).digest('hex').slice(0, 16);
}
