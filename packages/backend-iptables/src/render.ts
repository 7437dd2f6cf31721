// The rules for one pod, as a pure function of the interpreted pod and the backend options.
//
// It mirrors istio-iptables (tools/istio-iptables/pkg/capture/run.go) rule for rule, in the same
// order, with ISTIO_* renamed SHUNT_*. Two deliberate differences, both so that our rules live only
// in chains we own:
//  - mangle rules Istio appends straight to PREROUTING/OUTPUT sit in SHUNT_PREROUTING/SHUNT_OUTPUT,
//    reached by one jump each (same verdicts: ACCEPT in SHUNT_DIVERT still ends the table);
//  - chains nothing jumps to are not created (Istio leaves an unreferenced nat ISTIO_INBOUND in
//    TPROXY mode and when inbound capture is off).
// And two on semantics, where the issue asks for "excludes win":
//  - an explicit inbound port list drops the excluded ports (Istio ignores excludes for lists);
//  - in TPROXY mode the tunnel port (15008) is skipped in mangle too (Istio only skips it in nat,
//    where nothing jumps in TPROXY mode).
// The options beyond ports and CIDRs (core CaptureOptions) follow run.go the same way, again inside
// our own chains: excluded/rerouted interfaces (Istio: rules on nat PREROUTING/OUTPUT, mangle too in
// TPROXY mode) sit at the head of SHUNT_PREROUTING (nat, created only when an interface option is
// set, then jumped to instead of SHUNT_INBOUND) and SHUNT_OUTPUT; INVALID_DROP's ISTIO_DROP is
// SHUNT_DROP, jumped to from mangle PREROUTING before any other jump of ours. The RETURNs Istio puts
// in the built-in chains end that chain; ours return to it, which for capture is the same verdict.
// Every line is written the way iptables-save prints it (`-m tcp`, hex marks, option order), so
// the kernel's answer can be compared as text; the apply tests check this for every golden case.

import { captureOptionsOf, type Cidr, type MeshPod } from '@shunt/core';
import { type Family, hostText, isLoopback, networkText } from './addr';
import { checkPort, PodRulesError } from './errors';
import { renderAmbientRules } from './render-ambient';
import type { RenderOptions } from './options';
import { emptyRouting, type FamilyRules, type RulePlan, type TableRules } from './plan';
import { hex, TableBuilder } from './table-builder';

const DEFAULT_TUNNEL_PORT = 15008;
const DNS_PORT = 53;

export const CHAINS = {
  INBOUND: 'SHUNT_INBOUND',
  REDIRECT: 'SHUNT_REDIRECT',
  IN_REDIRECT: 'SHUNT_IN_REDIRECT',
  OUTPUT: 'SHUNT_OUTPUT',
  OUTPUT_DNS: 'SHUNT_OUTPUT_DNS',
  DIVERT: 'SHUNT_DIVERT',
  TPROXY: 'SHUNT_TPROXY',
  PREROUTING: 'SHUNT_PREROUTING',
  DROP: 'SHUNT_DROP',
} as const;

interface Checked {
  tunnelPort: number;
  inbound: { include: '*' | number[]; exclude: number[] };
  outbound: {
    includePorts: number[];
    excludePorts: number[];
    includeCidrs: '*' | { v4: string[]; v6: string[] };
    excludeCidrs: { v4: string[]; v6: string[] };
  };
  includesLoopback: boolean;
  dns: { port: number; servers: { v4: string[]; v6: string[] } } | undefined;
  /** Proxy uid first, then the extra ones (Istio loops over -u's list in order); same for gids. */
  uids: number[];
  gids: number[];
  excludeInterfaces: string[];
  rerouteInterfaces: string[];
  ownerGroups: { include: '*' | number[]; exclude: number[] };
  dropInvalid: boolean;
  /** The IPv4 "localhost" network (ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR), as iptables-save spells it. */
  loopbackV4: string;
}

const IFACE_RE = /^[a-zA-Z][a-zA-Z0-9_.-]{0,14}$/;

function checkIfaces(pod: MeshPod, field: string, v: unknown): string[] {
  if (!Array.isArray(v)) throw new PodRulesError(pod, field, v, 'not a list of interface names');
  v.forEach((n, i) => {
    if (typeof n !== 'string' || !IFACE_RE.test(n)) throw new PodRulesError(pod, `${field}[${i}]`, n, 'not an interface name (letter first, then [a-zA-Z0-9_.-], at most 15)');
  });
  return uniq(v as string[]);
}

function checkIds(pod: MeshPod, field: string, v: unknown): number[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new PodRulesError(pod, field, v, 'not a list of ids');
  return v.map((id, i) => checkId(pod, `${field}[${i}]`, id));
}

function checkId(pod: MeshPod, field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xfffffffe) {
    throw new PodRulesError(pod, field, v, 'not a uid/gid (an integer 0..4294967294)');
  }
  return v;
}

function uniq<T>(xs: T[]): T[] {
  return [...new Set(xs)];
}

function checkPorts(pod: MeshPod, field: string, v: unknown): number[] {
  if (!Array.isArray(v)) throw new PodRulesError(pod, field, v, 'not a list of ports');
  return uniq(v.map((p, i) => checkPort(pod, `${field}[${i}]`, p)));
}

function splitCidrs(pod: MeshPod, field: string, v: unknown): { v4: string[]; v6: string[]; loopback: boolean } {
  if (!Array.isArray(v)) throw new PodRulesError(pod, field, v, 'not a list of CIDRs');
  const out = { v4: [] as string[], v6: [] as string[], loopback: false };
  v.forEach((c: Cidr, i) => {
    if (!c || (c.family !== 4 && c.family !== 6)) throw new PodRulesError(pod, `${field}[${i}]`, c, 'not a CIDR of family 4 or 6');
    let text: string;
    try {
      text = networkText(c.address, c.prefix, c.family);
    } catch (e) {
      throw new PodRulesError(pod, `${field}[${i}]`, c, (e as Error).message);
    }
    (c.family === 4 ? out.v4 : out.v6).push(text);
    if (isLoopback(c.address, c.family)) out.loopback = true;
  });
  return { v4: uniq(out.v4), v6: uniq(out.v6), loopback: out.loopback };
}

/** Validates everything the rules use, so a bad value is reported by name instead of by iptables-restore. */
function check(pod: MeshPod, opts: RenderOptions): Checked {
  const { proxy, traffic } = pod;
  checkPort(pod, 'proxy.outboundPort', proxy.outboundPort);
  checkPort(pod, 'proxy.inboundPort', proxy.inboundPort);
  checkId(pod, 'proxy.uid', proxy.uid);
  checkId(pod, 'proxy.gid', proxy.gid);
  const tunnelPort = proxy.tunnelPort === undefined ? DEFAULT_TUNNEL_PORT : checkPort(pod, 'proxy.tunnelPort', proxy.tunnelPort);
  const dnsPort = proxy.dnsPort === undefined ? undefined : checkPort(pod, 'proxy.dnsPort', proxy.dnsPort);

  const inExclude = checkPorts(pod, 'traffic.inbound.exclude', traffic.inbound.exclude);
  const inInclude = traffic.inbound.include === '*' ? '*' : checkPorts(pod, 'traffic.inbound.include', traffic.inbound.include).filter((p) => !inExclude.includes(p));

  const excludeCidrs = splitCidrs(pod, 'traffic.outbound.excludeCidrs', traffic.outbound.excludeCidrs);
  let includeCidrs: Checked['outbound']['includeCidrs'] = '*';
  let includesLoopback = false;
  if (traffic.outbound.includeCidrs !== '*') {
    const s = splitCidrs(pod, 'traffic.outbound.includeCidrs', traffic.outbound.includeCidrs);
    includeCidrs = { v4: s.v4, v6: s.v6 };
    includesLoopback = s.loopback;
  }

  const servers = { v4: [] as string[], v6: [] as string[] };
  for (const fam of [4, 6] as const) {
    for (const s of fam === 4 ? opts.dnsServers.v4 : opts.dnsServers.v6) {
      try {
        servers[fam === 4 ? 'v4' : 'v6'].push(hostText(s, fam));
      } catch (e) {
        throw new Error(`iptables backend option dnsServers.v${fam}: ${(e as Error).message}`);
      }
    }
  }

  const cap = captureOptionsOf(pod);
  const podServers = cap.dnsServers;
  if (podServers !== undefined) {
    servers.v4 = [];
    servers.v6 = [];
    for (const fam of [4, 6] as const) {
      (fam === 4 ? podServers.v4 : podServers.v6).forEach((s, i) => {
        try {
          servers[fam === 4 ? 'v4' : 'v6'].push(hostText(s, fam));
        } catch (e) {
          throw new PodRulesError(pod, `capture.dnsServers.v${fam}[${i}]`, s, (e as Error).message);
        }
      });
    }
  }
  const lo = cap.hostLoopbackCidr;
  let loopbackV4: string;
  try {
    loopbackV4 = networkText(lo.address, lo.prefix, 4);
  } catch (e) {
    throw new PodRulesError(pod, 'capture.hostLoopbackCidr', lo, (e as Error).message);
  }
  if (!isLoopback(lo.address, 4) || lo.prefix < 8) throw new PodRulesError(pod, 'capture.hostLoopbackCidr', lo, 'not an IPv4 loopback network with 8..32 bits');
  const og = cap.ownerGroups;
  const ownerGroups = {
    include: og.include === '*' ? ('*' as const) : checkIds(pod, 'capture.ownerGroups.include', og.include),
    exclude: checkIds(pod, 'capture.ownerGroups.exclude', og.exclude),
  };

  return {
    uids: uniq([proxy.uid, ...checkIds(pod, 'proxy.extraUids', proxy.extraUids)]),
    gids: uniq([proxy.gid, ...checkIds(pod, 'proxy.extraGids', proxy.extraGids)]),
    excludeInterfaces: checkIfaces(pod, 'capture.excludeInterfaces', cap.excludeInterfaces),
    rerouteInterfaces: checkIfaces(pod, 'capture.rerouteInterfaces', cap.rerouteInterfaces),
    ownerGroups,
    dropInvalid: cap.dropInvalid === true,
    loopbackV4,
    tunnelPort,
    inbound: { include: inInclude, exclude: inExclude },
    outbound: {
      includePorts: checkPorts(pod, 'traffic.outbound.includePorts', traffic.outbound.includePorts),
      excludePorts: checkPorts(pod, 'traffic.outbound.excludePorts', traffic.outbound.excludePorts),
      includeCidrs,
      excludeCidrs: { v4: excludeCidrs.v4, v6: excludeCidrs.v6 },
    },
    includesLoopback,
    dns: dnsPort === undefined ? undefined : { port: dnsPort, servers: { v4: uniq(servers.v4), v6: uniq(servers.v6) } },
  };
}

interface FamilyConsts {
  family: Family;
  loopback: string;
  passthrough: string;
  anyAddress: string;
}

const V4: FamilyConsts = { family: 4, loopback: '127.0.0.1/32', passthrough: '127.0.0.6/32', anyAddress: '0.0.0.0' };
const V6: FamilyConsts = { family: 6, loopback: '::1/128', passthrough: '::6/128', anyAddress: '::' };

/** Istio writes every "localhost" match with ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR for v4 and ::1/128 for v6. */
function familyConsts(c: Checked, fam: Family): FamilyConsts {
  return fam === 4 ? { ...V4, loopback: c.loopbackV4 } : V6;
}

function inboundCaptured(c: Checked): boolean {
  return c.inbound.include === '*' || c.inbound.include.length > 0;
}

/** The owner-group RETURN(s) of handleCaptureByOwnerGroup; nothing for the default "*" without excludes. */
function ownerGroupRules(c: Checked): string[] {
  const g = c.ownerGroups;
  if (g.include === '*') return g.exclude.map((id) => `-m owner --gid-owner ${id} -j RETURN`);
  // One rule, all groups combined (hence Istio's limit of 64); an empty list returns everything.
  return [[...g.include.map((id) => `-m owner ! --gid-owner ${id}`), '-j RETURN'].join(' ')];
}

/**
 * nat PREROUTING's interface rules (shortCircuitExcludeInterfaces, shortCircuitKubeInternalInterface,
 * handleOutboundIncludeRules), in the order they end up in: the reroute REDIRECTs and the kubevirt
 * RETURNs are inserted at position 1, so the last one inserted comes first.
 */
function preroutingInterfaceRules(c: Checked, f: FamilyConsts): string[] {
  const out: string[] = [];
  const reroute = c.rerouteInterfaces;
  const inserted: string[] = [];
  if (c.outbound.includeCidrs === '*') {
    for (const i of reroute) inserted.push(`-i ${i} -j ${CHAINS.REDIRECT}`);
  } else {
    for (const cidr of f.family === 4 ? c.outbound.includeCidrs.v4 : c.outbound.includeCidrs.v6) {
      for (const i of reroute) inserted.push(`-d ${cidr} -i ${i} -j ${CHAINS.REDIRECT}`);
    }
  }
  out.push(...inserted.reverse());
  out.push(...[...reroute].reverse().map((i) => `-i ${i} -j RETURN`));
  out.push(...c.excludeInterfaces.map((i) => `-i ${i} -j RETURN`));
  return out;
}

/** nat: outbound capture in both modes, inbound capture in REDIRECT mode (run.go Run + handleInboundPortsInclude). */
function natTable(pod: MeshPod, c: Checked, f: FamilyConsts, tproxy: boolean): TableRules | undefined {
  const t = new TableBuilder();
  const { outboundPort, inboundPort } = pod.proxy;
  const tcpPort = (p: number, neg = false) => `-p tcp -m tcp ${neg ? '! ' : ''}--dport ${p}`;
  const ifaceRules = preroutingInterfaceRules(c, f);

  const inbound = !tproxy && inboundCaptured(c);
  if (inbound) {
    t.add(CHAINS.INBOUND, `${tcpPort(c.tunnelPort)} -j RETURN`);
    if (c.inbound.include === '*') {
      for (const p of c.inbound.exclude) if (p !== c.tunnelPort) t.add(CHAINS.INBOUND, `${tcpPort(p)} -j RETURN`);
      t.add(CHAINS.INBOUND, `-p tcp -j ${CHAINS.IN_REDIRECT}`);
    } else {
      for (const p of c.inbound.include) if (p !== c.tunnelPort) t.add(CHAINS.INBOUND, `${tcpPort(p)} -j ${CHAINS.IN_REDIRECT}`);
    }
  }
  t.add(CHAINS.REDIRECT, `-p tcp -j REDIRECT --to-ports ${outboundPort}`);
  t.add(CHAINS.IN_REDIRECT, `-p tcp -j REDIRECT --to-ports ${inboundPort}`);
  if (ifaceRules.length > 0) {
    // Istio's nat PREROUTING content, in a chain of ours (only when an interface option is set, so
    // every other pod keeps the direct jump to SHUNT_INBOUND).
    for (const r of ifaceRules) t.add(CHAINS.PREROUTING, r);
    if (inbound) t.add(CHAINS.PREROUTING, `-p tcp -j ${CHAINS.INBOUND}`);
    t.jump('PREROUTING', `-j ${CHAINS.PREROUTING}`);
  } else if (inbound) {
    t.jump('PREROUTING', `-p tcp -j ${CHAINS.INBOUND}`);
  }

  const O = CHAINS.OUTPUT;
  // Istio: `-A OUTPUT -o <nic> -j RETURN` ahead of the jump to ISTIO_OUTPUT.
  for (const i of c.excludeInterfaces) t.add(O, `-o ${i} -j RETURN`);
  // Port excludes come first: they must win over the proxy-to-self redirect below.
  for (const p of c.outbound.excludePorts) {
    t.add(O, `${tcpPort(p)} -j RETURN`);
    t.add(O, `-p udp -m udp --dport ${p} -j RETURN`);
  }
  // The proxy's inbound passthrough connects to the app from 127.0.0.6 (::6); let it through.
  t.add(O, `-s ${f.passthrough} -o lo -j RETURN`);
  const dns = c.dns;
  // uid block, once per proxy uid: proxy -> own pod IP over lo goes to the inbound listener; app -> lo
  // is left alone; anything else from the proxy is its own upstream and must not loop.
  for (const uid of c.uids) {
    t.add(
      O,
      dns
        ? `! -d ${f.loopback} -o lo -p tcp -m multiport ! --dports ${DNS_PORT},${c.tunnelPort} -m owner --uid-owner ${uid} -j ${CHAINS.IN_REDIRECT}`
        : `! -d ${f.loopback} -o lo ${tcpPort(c.tunnelPort, true)} -m owner --uid-owner ${uid} -j ${CHAINS.IN_REDIRECT}`,
    );
    if (!c.includesLoopback) {
      t.add(O, dns ? `-o lo ${tcpPort(DNS_PORT, true)} -m owner ! --uid-owner ${uid} -j RETURN` : `-o lo -m owner ! --uid-owner ${uid} -j RETURN`);
    }
    t.add(O, `-m owner --uid-owner ${uid} -j RETURN`);
  }
  // gid block, once per proxy gid: Istio only spares port 53 in the uid variant of the first rule; kept as is.
  for (const gid of c.gids) {
    t.add(O, `! -d ${f.loopback} -o lo ${tcpPort(c.tunnelPort, true)} -m owner --gid-owner ${gid} -j ${CHAINS.IN_REDIRECT}`);
    if (!c.includesLoopback) {
      t.add(O, dns ? `-o lo ${tcpPort(DNS_PORT, true)} -m owner ! --gid-owner ${gid} -j RETURN` : `-o lo -m owner ! --gid-owner ${gid} -j RETURN`);
    }
    t.add(O, `-m owner --gid-owner ${gid} -j RETURN`);
  }
  // Outbound owner groups (ISTIO_OUTBOUND_OWNER_GROUPS[_EXCLUDE]): before DNS, so they govern it too.
  for (const r of ownerGroupRules(c)) t.add(O, r);

  if (dns) {
    const servers = f.family === 4 ? dns.servers.v4 : dns.servers.v6;
    const captureAll = dns.servers.v4.length === 0 && dns.servers.v6.length === 0;
    if (captureAll || servers.length > 0) {
      t.add(O, `-j ${CHAINS.OUTPUT_DNS}`);
      for (const proto of ['tcp', 'udp'] as const) {
        if (captureAll) t.add(CHAINS.OUTPUT_DNS, `-p ${proto} -m ${proto} --dport ${DNS_PORT} -j REDIRECT --to-ports ${dns.port}`);
        for (const s of captureAll ? [] : servers) {
          t.add(CHAINS.OUTPUT_DNS, `-d ${s} -p ${proto} -m ${proto} --dport ${DNS_PORT} -j REDIRECT --to-ports ${dns.port}`);
        }
      }
    }
  }

  // Apps and Envoy-aware clients talking to localhost are never captured.
  t.add(O, `-d ${f.loopback} -j RETURN`);
  // CIDR excludes before any include, so excludes win.
  for (const cidr of f.family === 4 ? c.outbound.excludeCidrs.v4 : c.outbound.excludeCidrs.v6) t.add(O, `-d ${cidr} -j RETURN`);
  for (const p of c.outbound.includePorts) t.add(O, `${tcpPort(p)} -j ${CHAINS.REDIRECT}`);
  if (c.outbound.includeCidrs === '*') {
    t.add(O, `-j ${CHAINS.REDIRECT}`);
  } else {
    for (const cidr of f.family === 4 ? c.outbound.includeCidrs.v4 : c.outbound.includeCidrs.v6) t.add(O, `-d ${cidr} -j ${CHAINS.REDIRECT}`);
  }
  t.jump('OUTPUT', `-j ${O}`);
  return t.build();
}

/**
 * mangle: INVALID_DROP (both modes), and in TPROXY mode the inbound capture and the marks that route
 * replies back to the proxy.
 */
function mangleTable(pod: MeshPod, c: Checked, f: FamilyConsts, opts: RenderOptions, tproxy: boolean): TableRules | undefined {
  const t = new TableBuilder();
  const { inboundPort } = pod.proxy;
  const mark = hex(opts.tproxyMark);
  const outMark = hex(opts.outboundMark);
  const I = CHAINS.INBOUND;
  // Istio adds the excluded NICs' RETURNs to mangle only in TPROXY mode, ahead of its DROP rule.
  const mangleExcludes = tproxy ? c.excludeInterfaces : [];

  if (c.dropInvalid) {
    for (const i of mangleExcludes) t.add(CHAINS.DROP, `-i ${i} -j RETURN`);
    t.add(CHAINS.DROP, '-j DROP');
    // First of our mangle jumps, as Istio's rule comes before its ISTIO_INBOUND jump.
    t.jump('PREROUTING', `-m conntrack --ctstate INVALID -j ${CHAINS.DROP}`);
  }
  if (!tproxy) return t.build();

  if (inboundCaptured(c)) {
    t.add(CHAINS.DIVERT, `-j MARK --set-xmark ${mark}/0xffffffff`);
    t.add(CHAINS.DIVERT, `-j ACCEPT`);
    t.add(CHAINS.TPROXY, `! -d ${f.loopback} -p tcp -j TPROXY --on-port ${inboundPort} --on-ip ${f.anyAddress} --tproxy-mark ${mark}/0xffffffff`);
    // Istio inserts these three at the head of ISTIO_INBOUND: already-diverted packets, the
    // proxy's passthrough source, and app -> own pod IP over lo unless the proxy marked it.
    t.add(I, `-p tcp -m mark --mark ${mark} -j RETURN`);
    t.add(I, `-s ${f.passthrough} -i lo -p tcp -j RETURN`);
    t.add(I, `-i lo -p tcp -m mark ! --mark ${outMark} -j RETURN`);
    const established = `-m conntrack --ctstate RELATED,ESTABLISHED -j ${CHAINS.DIVERT}`;
    if (c.inbound.include === '*') {
      for (const p of c.inbound.exclude) t.add(I, `-p tcp -m tcp --dport ${p} -j RETURN`);
      // Deliberate difference: Istio's TPROXY rules send inbound 15008 to 15006 (its "15008 RETURN"
      // sits in the nat chain nothing jumps to in TPROXY mode). The tunnel port is meant to reach the
      // proxy's HBONE listener directly, as in REDIRECT mode, so it is skipped here too (README).
      if (!c.inbound.exclude.includes(c.tunnelPort)) t.add(I, `-p tcp -m tcp --dport ${c.tunnelPort} -j RETURN`);
      t.add(I, `-p tcp ${established}`);
      t.add(I, `-p tcp -j ${CHAINS.TPROXY}`);
    } else {
      for (const p of c.inbound.include) {
        if (p === c.tunnelPort) continue;
        t.add(I, `-p tcp -m tcp --dport ${p} ${established}`);
        t.add(I, `-p tcp -m tcp --dport ${p} -j ${CHAINS.TPROXY}`);
      }
    }
  }
  // Istio: `-A PREROUTING -i <nic> -j RETURN` (mangle, TPROXY) ahead of everything else.
  for (const i of mangleExcludes) t.add(CHAINS.PREROUTING, `-i ${i} -j RETURN`);
  if (inboundCaptured(c)) t.add(CHAINS.PREROUTING, `-p tcp -j ${I}`);
  // Keep the proxy's original_src mark on the connection so the app's replies can be routed back.
  t.add(CHAINS.PREROUTING, `-p tcp -m mark --mark ${mark} -j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff`);
  t.jump('PREROUTING', `-p tcp -j ${CHAINS.PREROUTING}`);

  const O = CHAINS.OUTPUT;
  for (const i of mangleExcludes) t.add(O, `-o ${i} -j RETURN`);
  t.add(O, `-o lo -p tcp -m mark --mark ${mark} -j RETURN`);
  for (const uid of c.uids) t.add(O, `! -d ${f.loopback} -o lo -p tcp -m owner --uid-owner ${uid} -j MARK --set-xmark ${outMark}/0xffffffff`);
  for (const gid of c.gids) t.add(O, `! -d ${f.loopback} -o lo -p tcp -m owner --gid-owner ${gid} -j MARK --set-xmark ${outMark}/0xffffffff`);
  t.add(O, `-p tcp -m connmark --mark ${mark} -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff`);
  t.jump('OUTPUT', `-j ${O}`);
  return t.build();
}

/** raw: DNS conntrack zones, so the app's and the proxy's port-53 flows do not collide (addDNSConntrackZones). */
function rawTable(c: Checked, f: FamilyConsts): TableRules | undefined {
  const dns = c.dns;
  if (!dns) return undefined;
  const t = new TableBuilder();
  const D = CHAINS.OUTPUT_DNS;
  for (const [kind, ids] of [['uid', c.uids], ['gid', c.gids]] as const) {
    for (const id of ids) {
      t.add(D, `-p udp -m udp --dport ${DNS_PORT} -m owner --${kind}-owner ${id} -j CT --zone 1`);
      t.add(D, `-p udp -m udp --sport ${dns.port} -m owner --${kind}-owner ${id} -j CT --zone 2`);
    }
  }
  t.jump('OUTPUT', `-j ${D}`);
  const captureAll = dns.servers.v4.length === 0 && dns.servers.v6.length === 0;
  const servers = captureAll ? [] : f.family === 4 ? dns.servers.v4 : dns.servers.v6;
  if (captureAll) {
    t.add(D, `-p udp -m udp --dport ${DNS_PORT} -j CT --zone 2`);
    t.add(CHAINS.INBOUND, `-p udp -m udp --sport ${DNS_PORT} -j CT --zone 1`);
  }
  for (const s of servers) {
    t.add(D, `-d ${s} -p udp -m udp --dport ${DNS_PORT} -j CT --zone 2`);
    t.add(CHAINS.INBOUND, `-s ${s} -p udp -m udp --sport ${DNS_PORT} -j CT --zone 1`);
  }
  if (captureAll || servers.length > 0) t.jump('PREROUTING', `-j ${CHAINS.INBOUND}`);
  return t.build();
}

/** Whether this backend installs anything for the pod at all (sidecar: istio-iptables' set; ambient: istio-cni's in-pod set). */
export function capturesTraffic(pod: MeshPod): boolean {
  return (pod.membership === 'sidecar' || pod.membership === 'ambient') && !pod.hostNetwork && pod.interceptionMode !== 'NONE';
}

/** IPv6 rules only for pods with an IPv6 address (Istio: --dual-stack); IPv4 rules always, as Istio does. */
export function podFamilies(pod: MeshPod): Family[] {
  return pod.ips.v6.length > 0 ? [4, 6] : [4];
}

/**
 * The complete rule set for a pod: iptables-save-form lines per family and table, plus the policy
 * routing TPROXY needs. Pure: same pod and options, same plan. A pod that is not captured
 * (no sidecar, host network, interception NONE) gets the empty plan.
 */
export function renderRules(pod: MeshPod, opts: RenderOptions): RulePlan {
  const plan: RulePlan = { v4: {}, v6: {}, routing: emptyRouting() };
  if (!capturesTraffic(pod)) return plan;
  // Ambient members get istio-cni's in-pod rules towards the node's ztunnel (render-ambient.ts).
  if (pod.membership === 'ambient') return renderAmbientRules(pod);
  if (pod.interceptionMode !== 'REDIRECT' && pod.interceptionMode !== 'TPROXY') {
    throw new PodRulesError(pod, 'interceptionMode', pod.interceptionMode, 'want REDIRECT, TPROXY or NONE');
  }
  const tproxy = pod.interceptionMode === 'TPROXY';
  const c = check(pod, opts);
  for (const fam of podFamilies(pod)) {
    const f = familyConsts(c, fam);
    const rules: FamilyRules = {};
    const raw = rawTable(c, f);
    if (raw) rules.raw = raw;
    if (tproxy || c.dropInvalid) {
      const mangle = mangleTable(pod, c, f, opts, tproxy);
      if (mangle) rules.mangle = mangle;
    }
    const nat = natTable(pod, c, f, tproxy);
    if (nat) rules.nat = nat;
    if (fam === 4) plan.v4 = rules;
    else plan.v6 = rules;
    if (tproxy) {
      plan.routing.policyRules.push({ family: fam, fwmark: opts.tproxyMark, table: opts.tproxyTable });
      plan.routing.localRoutes.push({ family: fam, table: opts.tproxyTable });
    }
    // Istio adds ::6/128 to lo with dual stack: IPv6 lo only holds ::1, and the passthrough binds ::6.
    if (fam === 6) plan.routing.loopbackAddresses.push('::6/128');
  }
  return plan;
}
