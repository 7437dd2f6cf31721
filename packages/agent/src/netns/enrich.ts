// Fills in the network namespace of pods announced without one (the Kubernetes API does not
// know it), by IP, before the mesh profile interprets them. Pods that already carry a netns
// (pods file, testbed) pass through with their cookie added.
import { concatMap, type OperatorFunction } from 'rxjs';
import type { AgentLogger } from '../observability/log';
import type { NetnsDiscovery } from './discovery';

/** The structural part of core's RawPodEvent this step reads and writes. */
interface UpsertLike {
  type: 'upsert';
  pod: {
    metadata?: { name?: string; namespace?: string };
    spec?: { hostNetwork?: boolean };
    status?: { podIP?: string; podIPs?: { ip: string }[] };
  };
  extras: { netnsPath?: string; netnsCookie?: string };
}

export function podIps(pod: UpsertLike['pod']): string[] {
  const ips = (pod.status?.podIPs ?? []).map((p) => p.ip);
  if (pod.status?.podIP && !ips.includes(pod.status.podIP)) ips.unshift(pod.status.podIP);
  return ips;
}

export function withDiscoveredNetns<E extends { type: string }>(
  discovery: NetnsDiscovery,
  log: AgentLogger,
  readCookie: (netnsPath: string) => bigint,
): OperatorFunction<E, E> {
  // concatMap keeps each pod's events in order; a cache hit costs one stat().
  // Never errors the stream: a pod this step cannot read passes on unchanged (validation and the
  // profile judge it), since one rejected promise here would end the events for every pod.
  return concatMap((ev: E): Promise<E> => enrich(ev).catch((e: unknown) => {
    log.warn({ err: e instanceof Error ? e.message : String(e) }, 'pod netns lookup failed');
    return ev;
  }));

  async function enrich(ev: E): Promise<E> {
    if (ev.type !== 'upsert') return ev;
    const up = ev as unknown as UpsertLike;
    if (up.pod.spec?.hostNetwork) return ev;
    const pod = `${up.pod.metadata?.namespace ?? 'default'}/${up.pod.metadata?.name ?? '?'}`;
    if (up.extras.netnsPath) {
      if (up.extras.netnsCookie) return ev;
      try {
        const cookie = readCookie(up.extras.netnsPath).toString();
        return { ...ev, extras: { ...up.extras, netnsCookie: cookie } };
      } catch (e) {
        log.warn({ pod, netnsPath: up.extras.netnsPath, err: (e as Error).message }, 'cannot read the netns cookie');
        return ev;
      }
    }
    const ips = podIps(up.pod);
    if (ips.length === 0) return ev; // not scheduled/started yet; a later update brings the IP
    try {
      const found = await discovery.resolve(ips);
      log.debug({ pod, ips, netnsPath: found.path, netnsCookie: found.cookie }, 'pod netns discovered');
      return { ...ev, extras: { ...up.extras, netnsPath: found.path, ...(found.cookie ? { netnsCookie: found.cookie } : {}) } };
    } catch (e) {
      log.warn({ pod, ips, err: (e as Error).message }, 'pod netns not found');
      return ev;
    }
  }
}
