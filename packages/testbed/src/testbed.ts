import { randomBytes, randomUUID } from 'node:crypto';
import { promises as fs, mkdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createNetns, deleteNetns, listNetns, Netlink, NetlinkError, runCommand } from '@shunt/netlink';
import { AddressPlan, BLOCKS, blockOfRunId, MAX_NODES, MAX_PODS_PER_NODE, type NodeAddressing } from './addressing';
import { cgroup2Mount, createCgroup, removeCgroupTree } from './cgroup';
import { execInPod, runInPod, type ExecOptions, type PodTarget, type ProcessHandle, type RunResult } from './exec';
import { httpResponderConfig, sidecarConfig } from './haproxy';
import { handwrittenRedirectRemoval, handwrittenRedirectRules, type HandwrittenRedirectOptions } from './iptables-handwritten';
import { kubePodOf, type KubePod } from './kube';
import {
  bridgeName,
  hostVethName,
  nodeLinkName,
  nodeNetnsName,
  POD_NAME_RE,
  podNetnsName,
  RUN_ID_RE,
  runIdOfNetns,
  runPrefix,
} from './names';
import { ProxyLogCollector, type ProxyLogRecord } from './proxy-log';
import { PROXY6_SOURCE } from './proxy6';
import { builtPackageMain } from './runtime-modules';
import { registerLive, unregisterLive } from './signals';
import { writeOwner } from './owner';
import {
  ECHO_CLIENT_SOURCE,
  ECHO_SERVER_SOURCE,
  HTTP_PROBE_SOURCE,
  parseIperf,
  parseSockperf,
  parseWrk,
  type HttpProbeResult,
  type IperfResult,
  type SockperfResult,
  type WrkResult,
} from './workloads';

export type MeshMode = 'sidecar' | 'ambient' | 'none';

export interface PodSpec {
  /** DNS label, at most 20 characters, unique in the testbed. */
  name: string;
  /** Node name; default the first node. */
  node?: string;
  namespace?: string;
  /** `sidecar` pods get the istio-proxy container in kubePod() and, by default, the proxy stand-ins. */
  mesh?: MeshMode;
  /** Start the proxy stand-ins (HAProxy v4 + Node v6 proxy as uid 1337); default: mesh === 'sidecar'. */
  sidecar?: boolean;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface TestbedOptions {
  /** Node count (names node0, node1, …) or names; default 1. At most 3. */
  nodes?: number | string[];
  pods: PodSpec[];
  /** IPv6 sidecar stand-in: `auto` starts it when @shunt/libbpf is built, `on` requires it. Default auto. */
  ipv6Proxy?: 'auto' | 'on' | 'off';
  /**
   * IPv4 sidecar stand-in: `haproxy` (default) or `node`, the IPv6 stand-in's Node proxy on IPv4
   * (needs @shunt/libbpf). `node` reads until read() returns 0, where HAProxy 2.6 takes a short
   * read plus EPOLLRDHUP as end of stream (matters for guarded splicing; see backend-sockops README).
   */
  ipv4Proxy?: 'haproxy' | 'node';
  /**
   * The HAProxy sidecars' access log (one line per connection, read into proxyLog()): default on,
   * since tests check the path with it. Off, as in Istio's default profile, for benchmarks: every
   * connection then costs the proxy and the testbed's own process nothing extra.
   */
  proxyAccessLog?: boolean;
  /** Fixed 4-hex run id (tests of gc); default random, checked against existing testbeds. */
  runId?: string;
}

export interface NodeInfo {
  name: string;
  index: number;
  netnsName: string;
  netnsPath: string;
  bridge: string;
  cgroupPath: string;
  addressing: NodeAddressing;
}

export interface PodInfo {
  name: string;
  namespace: string;
  /** Kubernetes-style uid, random per run. */
  uid: string;
  node: string;
  index: number;
  mesh: MeshMode;
  sidecar: boolean;
  netnsName: string;
  netnsPath: string;
  cgroupPath: string;
  /** Node-side end of the pod's veth (in the node netns). */
  hostVeth: string;
  ipv4: string;
  ipv6: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** Address slot on its node. */
  slot: number;
}

export interface SidecarStatus {
  ipv4: 'running' | 'stopped';
  ipv6: 'running' | 'stopped' | { unavailable: string };
}

export interface LinkPacketCounters {
  rxPackets: number;
  txPackets: number;
  rxBytes: number;
  txBytes: number;
}

export interface PodCounters {
  lo: LinkPacketCounters;
  eth0: LinkPacketCounters;
  /** nf_conntrack_count in the pod's netns; null when conntrack is not loaded on this kernel. */
  conntrack: number | null;
}

/** The uid/gid the proxy stand-ins run as (Istio's proxy uid). */
export const PROXY_UID = 1337;
/** Default uid of workloads started by the helpers (an unprivileged app). */
export const APP_UID = 1000;
export const SIDECAR_PORTS = { outbound: 15001, inbound: 15006 } as const;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Sidecar {
  /** The IPv4 stand-in: HAProxy, or the Node proxy (TestbedOptions.ipv4Proxy). */
  proxy4?: ProcessHandle;
  proxy6?: ProcessHandle;
  proxy6Unavailable?: string;
  log: ProxyLogCollector;
}

/**
 * A simulated Kubernetes node (or several) on this machine. Only the netns files, the cgroup
 * directories under the run's cgroup and processes exist outside the run's own namespaces.
 *
 * Use it like this, so it is removed also when a test fails:
 *   let tb: Testbed;
 *   beforeAll(async () => { tb = await Testbed.create({ pods: [{ name: 'a' }, { name: 'b' }] }); });
 *   afterAll(async () => { await tb?.dispose(); });
 */
export class Testbed {
  readonly prefix: string;
  readonly plan: AddressPlan;
  /** cgroup v2 directory of the run; nodes are children, pods grandchildren. */
  readonly cgroupRoot: string;
  /** Config files of the run's processes. */
  readonly stateDir: string;
  readonly nodes: NodeInfo[] = [];
  readonly pods: PodInfo[] = [];
  private readonly processes = new Set<ProcessHandle>();
  private readonly sidecars = new Map<string, Sidecar>();
  private readonly cleanups: { label: string; fn: () => Promise<void> }[] = [];
  private readonly netnsCreated: string[] = [];
  private disposing: Promise<void> | undefined;
  private nextPodIndex = 0;
  private readonly ipv6Proxy: 'auto' | 'on' | 'off';
  private readonly ipv4Proxy: 'haproxy' | 'node';
  private readonly proxyAccessLog: boolean;

  private constructor(
    readonly runId: string,
    opts: TestbedOptions,
  ) {
    this.prefix = runPrefix(runId);
    this.plan = new AddressPlan(blockOfRunId(runId));
    this.cgroupRoot = path.join(cgroup2Mount(), this.prefix);
    this.stateDir = path.join(os.tmpdir(), this.prefix);
    this.ipv6Proxy = opts.ipv6Proxy ?? 'auto';
    this.ipv4Proxy = opts.ipv4Proxy ?? 'haproxy';
    this.proxyAccessLog = opts.proxyAccessLog ?? true;
  }

  /** Builds nodes and pods; on any failure removes what it made and rethrows. */
  static async create(opts: TestbedOptions): Promise<Testbed> {
    const nodeNames = normaliseNodes(opts.nodes);
    validatePods(opts.pods, nodeNames);
    if (opts.runId !== undefined && !RUN_ID_RE.test(opts.runId)) {
      throw new Error(`runId ${JSON.stringify(opts.runId)}: want 4 lowercase hex digits`);
    }
    for (let attempt = 0; ; attempt++) {
      const runId = opts.runId ?? (await pickRunId());
      const tb = new Testbed(runId, opts);
      registerLive(tb);
      try {
        await tb.build(nodeNames, opts.pods);
        return tb;
      } catch (e) {
        await tb.dispose().catch(() => undefined);
        // Another run took the same id between pickRunId and our first netns: pick again.
        const lostRace = e instanceof NetlinkError && e.exists && tb.netnsCreated.length === 0;
        if (!lostRace || opts.runId !== undefined || attempt >= 5) throw e;
      }
    }
  }

  // ---- building ----------------------------------------------------------------------------

  private async newNetns(name: string): Promise<string> {
    const p = await createNetns(name);
    this.netnsCreated.push(name);
    return p;
  }

  private async build(nodeNames: string[], specs: PodSpec[]): Promise<void> {
    mkdirSync(this.stateDir, { recursive: true, mode: 0o755 });
    writeOwner(this.stateDir);
    await createCgroup(this.cgroupRoot);
    for (const [index, name] of nodeNames.entries()) await this.buildNode(name, index);
    await this.linkNodes();
    for (const spec of specs) await this.buildPod(spec, this.node(spec.node ?? nodeNames[0]!));
    await Promise.all(this.pods.filter((p) => p.sidecar).map((p) => this.startSidecar(p.name)));
  }

  /** Adds a pod to a running testbed (as create() would have), sidecar included. */
  async addPod(spec: PodSpec): Promise<PodInfo> {
    this.assertLive();
    validatePods([...this.pods.map((p) => ({ name: p.name, node: p.node })), spec], this.nodes.map((n) => n.name));
    const pod = await this.buildPod(spec, this.node(spec.node ?? this.nodes[0]!.name));
    if (pod.sidecar) await this.startSidecar(pod.name);
    return pod;
  }

  /** Removes a pod: its processes, cgroup, netns (and with it the veth pair). */
  async removePod(name: string): Promise<void> {
    const p = this.pod(name);
    await this.stopSidecar(name);
    this.sidecars.delete(name);
    await removeCgroupTree(p.cgroupPath);
    await deleteNetns(p.netnsName, { ignoreMissing: true });
    this.pods.splice(this.pods.indexOf(p), 1);
    const i = this.netnsCreated.indexOf(p.netnsName);
    if (i >= 0) this.netnsCreated.splice(i, 1);
  }

  private async buildNode(name: string, index: number): Promise<void> {
    const netnsName = nodeNetnsName(this.runId, name);
    const nsPath = await this.newNetns(netnsName);
    const nl = Netlink.at(nsPath);
    const addressing = this.plan.node(index);
    const bridge = bridgeName(this.runId);
    await nl.setUp('lo');
    await nl.setSysctl('net.ipv4.ip_forward', 1);
    await nl.setSysctl('net.ipv6.conf.all.forwarding', 1);
    await nl.addBridge(bridge);
    await nl.addAddress(bridge, `${addressing.gatewayV4}/${addressing.prefixV4}`);
    await nl.addAddress(bridge, `${addressing.gatewayV6}/${addressing.prefixV6}`);
    await nl.setUp(bridge);
    const cgroupPath = path.join(this.cgroupRoot, name);
    await createCgroup(cgroupPath);
    this.nodes.push({ name, index, netnsName, netnsPath: nsPath, bridge, cgroupPath, addressing });
  }

  /** Full mesh of point-to-point veths between node netns, with routes to each other's pod CIDRs. */
  private async linkNodes(): Promise<void> {
    for (const a of this.nodes) {
      for (const b of this.nodes) {
        if (a.index >= b.index) continue;
        const addr = this.plan.link(a.index, b.index);
        const la = nodeLinkName(this.runId, b.index);
        const lb = nodeLinkName(this.runId, a.index);
        const na = Netlink.at(a.netnsPath);
        const nb = Netlink.at(b.netnsPath);
        await na.addVeth(la, lb, { peerNetns: b.netnsPath });
        await na.addAddress(la, `${addr.v4[0]}/${addr.prefixV4}`);
        await na.addAddress(la, `${addr.v6[0]}/${addr.prefixV6}`);
        await nb.addAddress(lb, `${addr.v4[1]}/${addr.prefixV4}`);
        await nb.addAddress(lb, `${addr.v6[1]}/${addr.prefixV6}`);
        await na.setUp(la);
        await nb.setUp(lb);
        await na.addRoute({ dst: b.addressing.podCidrV4, via: addr.v4[1], dev: la });
        await na.addRoute({ dst: b.addressing.podCidrV6, via: addr.v6[1], dev: la, family: 6 });
        await nb.addRoute({ dst: a.addressing.podCidrV4, via: addr.v4[0], dev: lb });
        await nb.addRoute({ dst: a.addressing.podCidrV6, via: addr.v6[0], dev: lb, family: 6 });
      }
    }
  }

  private async buildPod(spec: PodSpec, node: NodeInfo): Promise<PodInfo> {
    const index = this.nextPodIndex++;
    const used = new Set(this.pods.filter((p) => p.node === node.name).map((p) => p.slot));
    let k = 0;
    while (used.has(k)) k++;
    const netnsName = podNetnsName(this.runId, spec.name);
    const nsPath = await this.newNetns(netnsName);
    const pod = Netlink.at(nsPath);
    const nodeNl = Netlink.at(node.netnsPath);
    const hostVeth = hostVethName(this.runId, index);
    const ips = this.plan.pod(node.index, k);
    const a = node.addressing;
    await nodeNl.addVeth(hostVeth, 'eth0', { peerNetns: nsPath });
    await nodeNl.setMaster(hostVeth, node.bridge);
    await nodeNl.setUp(hostVeth);
    await pod.setUp('lo');
    await pod.addAddress('eth0', `${ips.v4}/${a.prefixV4}`);
    await pod.addAddress('eth0', `${ips.v6}/${a.prefixV6}`);
    await pod.setUp('eth0');
    await pod.addRoute({ dst: 'default', via: a.gatewayV4, dev: 'eth0' });
    await pod.addRoute({ dst: 'default', via: a.gatewayV6, dev: 'eth0', family: 6 });
    // Short-lived benchmark connections must not run out of ports; keep 15000-15100 (proxy ports) free.
    await pod.setSysctl('net.ipv4.tcp_tw_reuse', 1);
    await pod.setSysctl('net.ipv4.ip_local_port_range', '20000 60999');
    const mesh = spec.mesh ?? 'none';
    const sidecar = spec.sidecar ?? mesh === 'sidecar';
    if (sidecar) {
      // The proxy's inbound passthrough source, as Istio's (Envoy binds 127.0.0.6 / ::6).
      await pod.addAddress('lo', '::6/128');
    }
    const cgroupPath = path.join(node.cgroupPath, spec.name);
    await createCgroup(cgroupPath);
    const info: PodInfo = {
      name: spec.name,
      namespace: spec.namespace ?? 'default',
      uid: randomUUID(),
      node: node.name,
      index,
      mesh,
      sidecar,
      netnsName,
      netnsPath: nsPath,
      cgroupPath,
      hostVeth,
      ipv4: ips.v4,
      ipv6: ips.v6,
      labels: { app: spec.name, ...spec.labels },
      annotations: { ...spec.annotations },
      slot: k,
    };
    this.pods.push(info);
    return info;
  }

  // ---- lookup ------------------------------------------------------------------------------

  node(name: string): NodeInfo {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`testbed ${this.runId}: no node ${JSON.stringify(name)} (have ${this.nodes.map((x) => x.name).join(', ')})`);
    return n;
  }

  pod(name: string): PodInfo {
    const p = this.pods.find((x) => x.name === name);
    if (!p) throw new Error(`testbed ${this.runId}: no pod ${JSON.stringify(name)} (have ${this.pods.map((x) => x.name).join(', ')})`);
    return p;
  }

  /** Netlink handle of a pod's or node's netns. */
  netlink(podOrNode: string): Netlink {
    const p = this.pods.find((x) => x.name === podOrNode);
    if (p) return Netlink.at(p.netnsPath);
    return Netlink.at(this.node(podOrNode).netnsPath);
  }

  private target(pod: string): PodTarget {
    const p = this.pod(pod);
    return { name: p.name, netnsPath: p.netnsPath, cgroupPath: p.cgroupPath };
  }

  // ---- processes ---------------------------------------------------------------------------

  /** Starts a process in the pod's netns and cgroup (as root unless `uid`); tracked until dispose(). */
  exec(pod: string, argv: readonly string[], opts: ExecOptions = {}): ProcessHandle {
    this.assertLive();
    const h = execInPod(this.target(pod), argv, opts);
    this.processes.add(h);
    void h.exited.finally(() => this.processes.delete(h)).catch(() => undefined);
    return h;
  }

  /** Runs to completion (default timeout 30 s); rejects on non-zero exit unless `allowFail`. */
  async run(pod: string, argv: readonly string[], opts: ExecOptions & { allowFail?: boolean } = {}): Promise<RunResult> {
    this.assertLive();
    return runInPod(this.target(pod), argv, opts);
  }

  /** Starts a process in a node's netns and cgroup (a node-level daemon, such as a ztunnel stand-in). */
  execOnNode(node: string, argv: readonly string[], opts: ExecOptions = {}): ProcessHandle {
    this.assertLive();
    const n = this.node(node);
    const h = execInPod({ name: `node ${n.name}`, netnsPath: n.netnsPath, cgroupPath: n.cgroupPath }, argv, opts);
    this.processes.add(h);
    void h.exited.finally(() => this.processes.delete(h)).catch(() => undefined);
    return h;
  }

  /** Waits until TCP ports listen in the pod (bounded: `timeoutMs`, default 10 s). */
  async waitListening(pod: string, ports: number[], opts: { timeoutMs?: number; family?: 4 | 6; watch?: ProcessHandle } = {}): Promise<void> {
    const p = this.pod(pod);
    const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
    let last = '';
    for (let i = 0; i < 1000 && Date.now() < deadline; i++) {
      const args = ['ss', '-Hltn', ...(opts.family === 6 ? ['-6'] : opts.family === 4 ? ['-4'] : [])];
      last = await runCommand(args, { netns: p.netnsPath });
      const listening = new Set([...last.matchAll(/:(\d+)\s/g)].map((m) => Number(m[1])));
      if (ports.every((x) => listening.has(x))) return;
      if (opts.watch) {
        const exited = await Promise.race([opts.watch.exited, sleep(0).then(() => undefined)]);
        if (exited) {
          throw new Error(
            `pod ${pod}: process ${opts.watch.pid} exited (${exited.code ?? exited.signal}) before listening on ${ports.join(',')}: ${opts.watch.stderrText().slice(-1000)}${opts.watch.stdoutText().slice(-500)}`,
          );
        }
      }
      await sleep(50);
    }
    throw new Error(`pod ${pod}: ports ${ports.join(',')} not listening after ${opts.timeoutMs ?? 10_000} ms; ss says:\n${last}`);
  }

  /** Socket inodes of the pod's TCP listeners on `port` (a server that re-creates its listener gets a new one). */
  async listenerInodes(pod: string, port: number): Promise<string[]> {
    const out = await runCommand(['ss', '-Hltne', 'sport', '=', `:${port}`], { netns: this.pod(pod).netnsPath });
    return [...out.matchAll(/\bino:(\d+)/g)].map((m) => m[1]!);
  }

  // ---- sidecars ----------------------------------------------------------------------------

  /** Starts the proxy stand-ins in a pod (idempotent): HAProxy or the Node proxy (IPv4, see ipv4Proxy) and the Node proxy (IPv6), as uid 1337. */
  async startSidecar(pod: string): Promise<SidecarStatus> {
    const p = this.pod(pod);
    const existing = this.sidecars.get(pod);
    if (existing?.proxy4) return this.sidecarStatus(pod);
    const sc: Sidecar = existing ?? { log: new ProxyLogCollector() };
    this.sidecars.set(pod, sc);
    let proxy4: ProcessHandle;
    if (this.ipv4Proxy === 'node') {
      const lib = builtPackageMain('@shunt/libbpf');
      if ('unavailable' in lib) throw new Error(`pod ${pod}: the Node IPv4 sidecar stand-in needs @shunt/libbpf: ${lib.unavailable}`);
      proxy4 = this.exec(pod, [process.execPath, '-e', PROXY6_SOURCE], {
        uid: PROXY_UID,
        gid: PROXY_UID,
        env: {
          SHUNT_LIBBPF_MAIN: lib.path,
          // Inbound connects from 127.0.0.6, like HAProxy's config and Envoy's inbound passthrough.
          SHUNT_PROXY6_LISTENERS: JSON.stringify([
            { name: 'outbound', port: SIDECAR_PORTS.outbound, family: 4 },
            { name: 'inbound', port: SIDECAR_PORTS.inbound, family: 4, source: '127.0.0.6' },
          ]),
        },
      });
    } else {
      const cfg = path.join(this.stateDir, `${p.name}-sidecar.cfg`);
      await fs.writeFile(cfg, sidecarConfig(SIDECAR_PORTS, { accessLog: this.proxyAccessLog }), { mode: 0o644 });
      proxy4 = this.exec(pod, ['haproxy', '-db', '-f', cfg], { uid: PROXY_UID, gid: PROXY_UID });
    }
    proxy4.stdout.setEncoding('utf8');
    proxy4.stdout.on('data', (s: string) => sc.log.push(s));
    sc.proxy4 = proxy4;
    await this.waitListening(pod, [SIDECAR_PORTS.outbound, SIDECAR_PORTS.inbound], { family: 4, watch: proxy4 });

    if (this.ipv6Proxy !== 'off') {
      const lib = builtPackageMain('@shunt/libbpf');
      if ('unavailable' in lib) {
        if (this.ipv6Proxy === 'on') throw new Error(`pod ${pod}: IPv6 sidecar stand-in needs @shunt/libbpf: ${lib.unavailable}`);
        sc.proxy6Unavailable = lib.unavailable;
      } else {
        const proxy6 = this.exec(pod, [process.execPath, '-e', PROXY6_SOURCE], {
          uid: PROXY_UID,
          gid: PROXY_UID,
          env: {
            SHUNT_LIBBPF_MAIN: lib.path,
            SHUNT_PROXY6_LISTENERS: JSON.stringify([
              { name: 'outbound', port: SIDECAR_PORTS.outbound },
              { name: 'inbound', port: SIDECAR_PORTS.inbound, source: '::6' },
            ]),
          },
        });
        proxy6.stdout.setEncoding('utf8');
        proxy6.stdout.on('data', (s: string) => sc.log.push(s));
        sc.proxy6 = proxy6;
        try {
          await this.waitListening(pod, [SIDECAR_PORTS.outbound, SIDECAR_PORTS.inbound], { family: 6, watch: proxy6 });
        } catch (e) {
          if (this.ipv6Proxy === 'on') throw e;
          sc.proxy6 = undefined;
          sc.proxy6Unavailable = (e as Error).message;
        }
      }
    }
    return this.sidecarStatus(pod);
  }

  async stopSidecar(pod: string): Promise<void> {
    const sc = this.sidecars.get(pod);
    if (!sc) return;
    await Promise.all([sc.proxy4?.kill(), sc.proxy6?.kill()]);
    sc.proxy4 = undefined;
    sc.proxy6 = undefined;
  }

  sidecarStatus(pod: string): SidecarStatus {
    const sc = this.sidecars.get(pod);
    const running = (h: ProcessHandle | undefined) => h !== undefined && this.processes.has(h);
    return {
      ipv4: running(sc?.proxy4) ? 'running' : 'stopped',
      ipv6: sc?.proxy6Unavailable ? { unavailable: sc.proxy6Unavailable } : running(sc?.proxy6) ? 'running' : 'stopped',
    };
  }

  /**
   * Connections the pod's sidecar has logged (one record per finished connection), optionally only
   * those accepted at or after `since` (epoch ms). Both stand-ins log when a connection closes, so
   * wait for the client to finish first.
   */
  proxyLog(pod: string, opts: { since?: number } = {}): ProxyLogRecord[] {
    this.pod(pod);
    const recs = this.sidecars.get(pod)?.log.records ?? [];
    // HAProxy's accept time has ms resolution; allow for rounding.
    return opts.since === undefined ? [...recs] : recs.filter((r) => r.at >= opts.since! - 1);
  }

  /** Waits (bounded) until the pod's sidecar has logged at least `count` records matching `filter`. */
  async waitProxyLog(
    pod: string,
    filter: (r: ProxyLogRecord) => boolean,
    opts: { count?: number; timeoutMs?: number } = {},
  ): Promise<ProxyLogRecord[]> {
    const want = opts.count ?? 1;
    const deadline = Date.now() + (opts.timeoutMs ?? 5000);
    for (let i = 0; i < 1000; i++) {
      const hits = this.proxyLog(pod).filter(filter);
      if (hits.length >= want || Date.now() > deadline) return hits;
      await sleep(20);
    }
    return this.proxyLog(pod).filter(filter);
  }

  /**
   * Every record matching `filter`, read once the log has stopped growing for `quietMs` (HAProxy
   * logs a connection when it closes, so a loop or a late hop shows up as more records later):
   * "exactly one record" checks must read the whole log, not return at its first line. Bounded;
   * at the deadline it returns what it has (a log that never settles fails a count check anyway).
   */
  async settledProxyLog(pod: string, filter: (r: ProxyLogRecord) => boolean, opts: { quietMs?: number; timeoutMs?: number; atLeast?: number } = {}): Promise<ProxyLogRecord[]> {
    const quietMs = opts.quietMs ?? 300;
    const deadline = Date.now() + (opts.timeoutMs ?? 5000);
    let last = -1;
    let stableSince = Date.now();
    for (let i = 0; i < 1000 && Date.now() < deadline; i++) {
      const n = this.proxyLog(pod).filter(filter).length;
      if (n !== last) {
        last = n;
        stableSince = Date.now();
      } else if (n >= (opts.atLeast ?? 1) && Date.now() - stableSince >= quietMs) break;
      await sleep(20);
    }
    return this.proxyLog(pod).filter(filter);
  }

  clearProxyLog(pod: string): void {
    const sc = this.sidecars.get(pod);
    if (sc) sc.log.records.length = 0;
  }

  // ---- workloads ---------------------------------------------------------------------------

  /** Fast HTTP responder (HAProxy answering from memory) on `port`, IPv4 and IPv6, as the app uid. */
  async startHttpServer(pod: string, opts: { port?: number; body?: string } = {}): Promise<ProcessHandle> {
    const port = opts.port ?? 8080;
    const cfg = path.join(this.stateDir, `${pod}-http-${port}.cfg`);
    await fs.writeFile(cfg, httpResponderConfig(port, opts.body ?? `hello from ${pod}`), { mode: 0o644 });
    const h = this.exec(pod, ['haproxy', '-db', '-f', cfg], { uid: APP_UID });
    await this.waitListening(pod, [port], { watch: h });
    return h;
  }

  /** TCP echo server (Node) on `port`, dual stack, as the app uid. */
  async startEchoServer(pod: string, opts: { port?: number } = {}): Promise<ProcessHandle> {
    const port = opts.port ?? 9000;
    const h = this.exec(pod, [process.execPath, '-e', ECHO_SERVER_SOURCE, String(port)], { uid: APP_UID });
    await this.waitListening(pod, [port], { watch: h });
    return h;
  }

  async startSockperfServer(pod: string, opts: { port?: number } = {}): Promise<ProcessHandle> {
    const port = opts.port ?? 11111;
    const h = this.exec(pod, ['sockperf', 'server', '--tcp', '-i', '0.0.0.0', '-p', String(port)], { uid: APP_UID });
    await this.waitListening(pod, [port], { watch: h });
    return h;
  }

  async startIperfServer(pod: string, opts: { port?: number } = {}): Promise<ProcessHandle> {
    const port = opts.port ?? 5201;
    const h = this.exec(pod, ['iperf3', '-s', '-p', String(port)], { uid: APP_UID });
    await this.waitListening(pod, [port], { watch: h });
    return h;
  }

  /** `count` sequential HTTP GETs, each on a new connection, from the pod as the app uid. */
  async httpGet(pod: string, url: string, opts: { count?: number; timeoutMs?: number; uid?: number } = {}): Promise<HttpProbeResult[]> {
    const count = opts.count ?? 1;
    const timeoutMs = opts.timeoutMs ?? 5000;
    const res = await this.run(pod, [process.execPath, '-e', HTTP_PROBE_SOURCE, url, String(count), String(timeoutMs)], {
      uid: opts.uid ?? APP_UID,
      timeoutMs: timeoutMs * count + 5000,
    });
    return JSON.parse(res.stdout) as HttpProbeResult[];
  }

  /** One TCP echo exchange from the pod; returns the reply. */
  async echo(pod: string, host: string, port: number, message: string, opts: { timeoutMs?: number; uid?: number } = {}): Promise<string> {
    const timeoutMs = opts.timeoutMs ?? 5000;
    const res = await this.run(pod, [process.execPath, '-e', ECHO_CLIENT_SOURCE, host, String(port), message, String(timeoutMs)], {
      uid: opts.uid ?? APP_UID,
      timeoutMs: timeoutMs + 5000,
    });
    return (JSON.parse(res.stdout) as { reply: string }).reply;
  }

  /** sockperf TCP ping-pong for `seconds`; round-trip percentiles in µs. */
  async sockperfPingPong(pod: string, host: string, opts: { port?: number; seconds?: number; uid?: number } = {}): Promise<SockperfResult> {
    const seconds = opts.seconds ?? 3;
    const res = await this.run(
      pod,
      ['sockperf', 'ping-pong', '--tcp', '--full-rtt', '-i', host, '-p', String(opts.port ?? 11111), '-t', String(seconds)],
      { uid: opts.uid ?? APP_UID, timeoutMs: seconds * 1000 + 15_000 },
    );
    return parseSockperf(res.stdout + res.stderr);
  }

  /** iperf3 single stream for `seconds`. */
  async iperf(pod: string, host: string, opts: { port?: number; seconds?: number; uid?: number } = {}): Promise<IperfResult> {
    const seconds = opts.seconds ?? 3;
    const res = await this.run(pod, ['iperf3', '-c', host, '-p', String(opts.port ?? 5201), '-t', String(seconds), '-J'], {
      uid: opts.uid ?? APP_UID,
      timeoutMs: seconds * 1000 + 15_000,
      allowFail: true,
    });
    return parseIperf(res.stdout);
  }

  /** wrk for `seconds`; `keepAlive: false` sends `Connection: close`, so every request is a new connection. */
  async wrk(
    pod: string,
    url: string,
    opts: { seconds?: number; connections?: number; threads?: number; keepAlive?: boolean; uid?: number } = {},
  ): Promise<WrkResult> {
    const seconds = opts.seconds ?? 3;
    const conns = opts.connections ?? 8;
    const argv = ['wrk', `-t${opts.threads ?? 1}`, `-c${conns}`, `-d${seconds}s`, '--timeout', '2s'];
    if (opts.keepAlive === false) argv.push('-H', 'Connection: close');
    argv.push(url);
    const res = await this.run(pod, argv, { uid: opts.uid ?? APP_UID, timeoutMs: seconds * 1000 + 15_000 });
    return parseWrk(res.stdout);
  }

  // ---- path evidence -----------------------------------------------------------------------

  /** Packet counters of lo and eth0 and the conntrack entry count in the pod's netns. */
  async counters(pod: string): Promise<PodCounters> {
    const nl = this.netlink(pod);
    const links = await nl.links({ stats: true });
    const pick = (name: string): LinkPacketCounters => {
      const s = links.find((l) => l.name === name)?.stats;
      if (!s) throw new Error(`pod ${pod}: no stats for ${name}`);
      return { rxPackets: s.rx.packets, txPackets: s.tx.packets, rxBytes: s.rx.bytes, txBytes: s.tx.bytes };
    };
    return { lo: pick('lo'), eth0: pick('eth0'), conntrack: await this.conntrackCount(pod) };
  }

  async conntrackCount(pod: string): Promise<number | null> {
    try {
      return Number(await this.netlink(pod).getSysctl('net.netfilter.nf_conntrack_count'));
    } catch {
      return null;
    }
  }

  /** Empties the conntrack table of the pod's netns only. */
  async conntrackFlush(pod: string): Promise<void> {
    await runCommand(['conntrack', '-F'], { netns: this.pod(pod).netnsPath }).catch((e: Error) => {
      // conntrack -F reports an error when the table is already empty on some versions.
      if (!/0 flow entries|not found/i.test(e.message)) throw e;
    });
  }

  // ---- hand-written iptables (reference sidecar path) --------------------------------------

  /** Installs istio-like nat REDIRECT rules (v4 and v6) in the pod's netns; removed by dispose(). */
  async applyHandwrittenRedirect(pod: string, opts: HandwrittenRedirectOptions = {}): Promise<void> {
    const p = this.pod(pod);
    await runCommand(['iptables-restore', '--noflush'], { netns: p.netnsPath, input: handwrittenRedirectRules(4, opts) });
    await runCommand(['ip6tables-restore', '--noflush'], { netns: p.netnsPath, input: handwrittenRedirectRules(6, opts) });
  }

  async removeHandwrittenRedirect(pod: string): Promise<void> {
    const p = this.pod(pod);
    await runCommand(['iptables-restore', '--noflush'], { netns: p.netnsPath, input: handwrittenRedirectRemoval() });
    await runCommand(['ip6tables-restore', '--noflush'], { netns: p.netnsPath, input: handwrittenRedirectRemoval() });
  }

  // ---- kubernetes view ---------------------------------------------------------------------

  /** The pod as the Kubernetes API would show it, plus the pods file's `shunt:` key (netns, cgroup, host veth). */
  kubePod(pod: string): KubePod {
    const p = this.pod(pod);
    return kubePodOf(p, this.node(p.node));
  }

  // ---- cleanup -----------------------------------------------------------------------------

  /** Registers extra cleanup (a pin, a qdisc, a rule) to run first on dispose(), newest first. */
  track(label: string, fn: () => Promise<void>): void {
    this.assertLive();
    this.cleanups.push({ label, fn });
  }

  get disposed(): boolean {
    return this.disposing !== undefined;
  }

  private assertLive(): void {
    if (this.disposing) throw new Error(`testbed ${this.runId} is disposed`);
  }

  /**
   * Removes everything the run made: tracked cleanups, processes (the whole cgroup subtree is
   * killed), pod and node netns (taking veths, bridges, routes and rules with them), cgroups, the
   * state dir. Idempotent; collects all errors and throws them together at the end.
   */
  dispose(): Promise<void> {
    this.disposing ??= this.doDispose();
    return this.disposing;
  }

  private async doDispose(): Promise<void> {
    const errors: string[] = [];
    const attempt = async (label: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (e) {
        errors.push(`${label}: ${(e as Error).message}`);
      }
    };
    for (const c of [...this.cleanups].reverse()) await attempt(c.label, c.fn);
    await Promise.all([...this.processes].map((h) => attempt(`process ${h.pid}`, () => h.kill('SIGKILL'))));
    await attempt(`cgroup ${this.cgroupRoot}`, () => removeCgroupTree(this.cgroupRoot));
    for (const name of [...this.netnsCreated].reverse()) {
      await attempt(`netns ${name}`, () => deleteNetns(name, { ignoreMissing: true }));
    }
    await attempt(`state dir ${this.stateDir}`, async () => rmSync(this.stateDir, { recursive: true, force: true }));
    unregisterLive(this);
    if (errors.length) throw new Error(`testbed ${this.runId}: dispose left errors:\n  ${errors.join('\n  ')}`);
  }
}

function normaliseNodes(nodes: TestbedOptions['nodes']): string[] {
  const names = typeof nodes === 'number' || nodes === undefined ? Array.from({ length: nodes ?? 1 }, (_, i) => `node${i}`) : nodes;
  if (names.length < 1 || names.length > MAX_NODES) throw new Error(`nodes: want 1..${MAX_NODES}, got ${names.length}`);
  for (const n of names) if (!POD_NAME_RE.test(n)) throw new Error(`node name ${JSON.stringify(n)}: want a DNS label of at most 20 characters`);
  if (new Set(names).size !== names.length) throw new Error(`node names must be unique: ${names.join(', ')}`);
  return names;
}

function validatePods(pods: PodSpec[], nodes: string[]): void {
  if (!Array.isArray(pods)) throw new Error('pods: want an array of pod specs');
  const seen = new Set<string>();
  const perNode = new Map<string, number>();
  for (const p of pods) {
    if (!POD_NAME_RE.test(p.name ?? '')) throw new Error(`pod name ${JSON.stringify(p.name)}: want a DNS label of at most 20 characters`);
    if (seen.has(p.name)) throw new Error(`pod ${p.name}: duplicate name`);
    seen.add(p.name);
    const node = p.node ?? nodes[0]!;
    if (!nodes.includes(node)) throw new Error(`pod ${p.name}: node ${JSON.stringify(node)} is not one of ${nodes.join(', ')}`);
    perNode.set(node, (perNode.get(node) ?? 0) + 1);
    if (perNode.get(node)! > MAX_PODS_PER_NODE) throw new Error(`node ${node}: more than ${MAX_PODS_PER_NODE} pods`);
    if (p.mesh !== undefined && !['sidecar', 'ambient', 'none'].includes(p.mesh)) {
      throw new Error(`pod ${p.name}: mesh ${JSON.stringify(p.mesh)} is not sidecar, ambient or none`);
    }
  }
}

/**
 * A random run id whose address block no live testbed uses. Random ids are < 0x200, so id and
 * block are one to one and the first `ip netns add` (which fails if the name exists) settles a race
 * between two runs that picked the same id.
 */
async function pickRunId(): Promise<string> {
  const existing = await listNetns();
  const usedIds = new Set(existing.map(runIdOfNetns).filter((x): x is string => x !== undefined));
  const usedBlocks = new Set([...usedIds].map(blockOfRunId));
  for (let i = 0; i < 200; i++) {
    const id = (randomBytes(2).readUInt16BE(0) % BLOCKS).toString(16).padStart(4, '0');
    if (!usedIds.has(id) && !usedBlocks.has(blockOfRunId(id))) return id;
  }
  throw new Error(`no free testbed address block: ${usedIds.size} testbeds exist (npm run testbed:gc removes leftovers)`);
}

