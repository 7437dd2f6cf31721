import type { Address, Family, Link, LinkCounters, Route, Rule } from './types';

type Json = Record<string, unknown>;

const num = (v: unknown): number => (typeof v === 'number' ? v : Number(v ?? 0));
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

function counters(side: unknown): LinkCounters {
  const s = (side ?? {}) as Json;
  return { bytes: num(s.bytes), packets: num(s.packets), errors: num(s.errors), dropped: num(s.dropped) };
}

export function parseLink(j: Json): Link {
  const flags = Array.isArray(j.flags) ? (j.flags as string[]) : [];
  const info = (j.linkinfo ?? undefined) as Json | undefined;
  const stats64 = (j.stats64 ?? j.stats) as Json | undefined;
  const link: Link = {
    ifindex: num(j.ifindex),
    name: String(j.ifname),
    flags,
    up: flags.includes('UP'),
    operstate: String(j.operstate ?? 'UNKNOWN'),
    mtu: num(j.mtu),
    raw: j,
  };
  const mac = str(j.address);
  if (mac) link.mac = mac;
  const master = str(j.master);
  if (master) link.master = master;
  const peer = str(j.link);
  if (peer) link.peer = peer;
  const kind = info ? str(info.info_kind) : undefined;
  if (kind) link.kind = kind;
  if (stats64) link.stats = { rx: counters(stats64.rx), tx: counters(stats64.tx) };
  return link;
}

export function parseAddresses(links: Json[]): Address[] {
  const out: Address[] = [];
  for (const l of links) {
    const infos = Array.isArray(l.addr_info) ? (l.addr_info as Json[]) : [];
    for (const a of infos) {
      const fam = a.family === 'inet6' ? 6 : a.family === 'inet' ? 4 : undefined;
      if (!fam || typeof a.local !== 'string') continue;
      const prefixLength = num(a.prefixlen);
      out.push({
        ifname: String(l.ifname),
        ifindex: num(l.ifindex),
        family: fam,
        address: a.local,
        prefixLength,
        scope: String(a.scope ?? ''),
        cidr: `${a.local}/${prefixLength}`,
      });
    }
  }
  return out;
}

export function parseRoute(j: Json, family: Family): Route {
  const r: Route = {
    family,
    dst: String(j.dst ?? 'default'),
    type: String(j.type ?? 'unicast'),
    table: String(j.table ?? 'main'),
    raw: j,
  };
  const dev = str(j.dev);
  if (dev) r.dev = dev;
  const via = str(j.gateway) ?? (j.via && typeof j.via === 'object' ? str((j.via as Json).host) : undefined);
  if (via) r.via = via;
  const src = str(j.prefsrc);
  if (src) r.src = src;
  const protocol = str(j.protocol);
  if (protocol) r.protocol = protocol;
  const scope = str(j.scope);
  if (scope) r.scope = scope;
  if (j.metric !== undefined) r.metric = num(j.metric);
  return r;
}

export function parseRule(j: Json, family: Family): Rule {
  const r: Rule = {
    family,
    priority: num(j.priority),
    table: String(j.table ?? ''),
    raw: j,
  };
  if (j.fwmark !== undefined) r.fwmark = Number(j.fwmark);
  if (j.fwmask !== undefined) r.fwmask = Number(j.fwmask);
  const src = str(j.src);
  if (src && src !== 'all') r.src = j.srclen !== undefined ? `${src}/${num(j.srclen)}` : src;
  const dst = str(j.dst);
  if (dst) r.dst = j.dstlen !== undefined ? `${dst}/${num(j.dstlen)}` : dst;
  const iif = str(j.iif);
  if (iif) r.iif = iif;
  const oif = str(j.oif);
  if (oif) r.oif = oif;
  const action = str(j.action);
  if (action) r.action = action;
  return r;
}
