/**
 * SockopsBackend: Merbridge-style redirect driven by control-plane data.
 *
 * Kernel state, all under <bpffsRoot>/sockops/:
 *   maps/<name>   every map of bpf/include/shunt_sockops.h (pinned by name by libbpf)
 *   links/<prog>  one bpf_link per program (cgroup links coexist with other programs on
 *                 the same cgroup; the sk_msg link is on the splice sockhash)
 * A restarted process adopts links and maps from the pins; nothing is detached on a plain
 * stop(), so redirects keep working while no agent runs. The pod registry is the kernel
 * itself: pod_meta (netns cookie -> uid/namespace/name) next to pod_cfg.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BpfLink, BpfObject, bpfObjectPath, netnsCookie } from '@shunt/libbpf';
import type {
  InstalledState,
  MeshPod,
  NodeCapabilities,
  NodeContext,
  PodRef,
  RedirectBackend,
  Support,
} from '@shunt/core';
import { SockopsMaps, type InstalledPodProgram, type SpliceSetting } from './maps';
import { PodConfigError, canonical, fingerprintOf, podProgram } from './pod-program';
import { sockopsSupport } from './support';

export interface SockopsOptions {
  /** Which connections are spliced (by original destination port). Default: see DEFAULT_SPLICE. */
  splice?: SpliceSetting;
}

/**
 * Default chosen from the benchmark (README, "Splicing default"): splicing every captured
 * connection wins on latency and connection rate in our measurements.
 */
export const DEFAULT_SPLICE: SpliceSetting = 'all';

interface ProgramSpec {
  object: string;
  program: string;
  attach: 'cgroup' | 'sk_msg';
}

const DNS_OBJECT = 'sockops/dns.bpf.o';

export const PROGRAMS: readonly ProgramSpec[] = [
  { object: 'sockops/connect.bpf.o', program: 'shunt_connect4', attach: 'cgroup' },
  { object: 'sockops/connect.bpf.o', program: 'shunt_connect6', attach: 'cgroup' },
  { object: 'sockops/sockops.bpf.o', program: 'shunt_sockops', attach: 'cgroup' },
  { object: 'sockops/getsockopt.bpf.o', program: 'shunt_getsockopt', attach: 'cgroup' },
  { object: 'sockops/redir.bpf.o', program: 'shunt_redir', attach: 'sk_msg' },
  // DNS capture: inert unless a pod's config has a DNS port (see dns.bpf.c).
  { object: DNS_OBJECT, program: 'shunt_sendmsg4', attach: 'cgroup' },
  { object: DNS_OBJECT, program: 'shunt_sendmsg6', attach: 'cgroup' },
  { object: DNS_OBJECT, program: 'shunt_recvmsg4', attach: 'cgroup' },
  { object: DNS_OBJECT, program: 'shunt_recvmsg6', attach: 'cgroup' },
  { object: DNS_OBJECT, program: 'shunt_sock_release', attach: 'cgroup' },
];

export class SockopsBackendError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SockopsBackendError';
  }
}

export class SockopsBackend implements RedirectBackend {
  readonly name = 'sockops' as const;
  private readonly splice: SpliceSetting;
  private node: NodeContext | null = null;
  private dir = '';
  private maps: SockopsMaps | null = null;
  private links = new Map<string, BpfLink>();
  private nextGen = 1;
  /**
   * What the kernel holds per netns cookie, read back at start() and by every observe(), and
   * kept current by enroll/unenroll, so those touch only the pod's own entries instead of
   * scanning the node's maps (enroll latency stays flat with the number of pods).
   */
  private installed = new Map<bigint, InstalledPodProgram>();

  constructor(opts: SockopsOptions = {}) {
    this.splice = opts.splice ?? DEFAULT_SPLICE;
  }

  support(caps: NodeCapabilities): Support {
    return sockopsSupport(caps);
  }

  fingerprint(pod: MeshPod): string {
    return fingerprintOf(podProgram(pod, 0n));
  }

  get pinDir(): string {
    return this.dir;
  }

  async start(node: NodeContext): Promise<void> {
    if (this.maps) return;
    this.node = node;
    this.dir = path.join(node.bpffsRoot, 'sockops');
    const mapsDir = path.join(this.dir, 'maps');
    const linksDir = path.join(this.dir, 'links');
    fs.mkdirSync(mapsDir, { recursive: true });
    fs.mkdirSync(linksDir, { recursive: true });

    for (const spec of PROGRAMS) {
      const pin = path.join(linksDir, spec.program);
      if (fs.existsSync(pin)) this.links.set(spec.program, BpfLink.fromPin(pin));
    }
    const missing = PROGRAMS.filter((s) => !this.links.has(s.program));
    if (missing.length > 0) this.attach(missing, mapsDir, linksDir, node.cgroupRoot);
    if (missing.length < PROGRAMS.length)
      node.log.info({ adopted: PROGRAMS.length - missing.length, attached: missing.length, dir: this.dir }, 'sockops: adopted pinned links');

    this.maps = SockopsMaps.open(mapsDir);
    this.maps.setSplice(this.splice);
    const installed = this.maps.readPods();
    this.installed = new Map(installed.map((p) => [p.netnsCookie, p]));
    this.nextGen = Math.max(0, ...installed.map((p) => p.gen), ...this.maps.selectionGens()) + 1;
    // Selections of a generation no pod points at are leftovers of an interrupted write.
    const live = new Set(installed.map((p) => p.gen));
    for (const gen of this.maps.selectionGens()) if (!live.has(gen)) this.maps.deleteGen(gen);
  }

  private attach(specs: readonly ProgramSpec[], mapsDir: string, linksDir: string, cgroupRoot: string): void {
    const objects = new Map<string, BpfObject>();
    try {
      for (const spec of specs) {
        let obj = objects.get(spec.object);
        if (!obj) {
          obj = BpfObject.open(bpfObjectPath(spec.object), { pinMaps: mapsDir });
          objects.set(spec.object, obj);
        }
        const prog = obj.program(spec.program);
        const link =
          spec.attach === 'cgroup' ? prog.attachCgroup(cgroupRoot) : prog.attachSkMsg(obj.map('splice_socks'));
        // A pre-6.10 sk_msg attachment is not a bpf_link: it lives on the pinned sockhash.
        if (link.kind === 'link') link.pin(path.join(linksDir, spec.program));
        this.links.set(spec.program, link);
      }
    } finally {
      // Links and pins keep programs and maps alive; the objects are not needed any more.
      for (const obj of objects.values()) obj.close();
    }
  }

  private requireMaps(op: string): SockopsMaps {
    if (!this.maps) throw new SockopsBackendError(`sockops: ${op} called before start()`);
    return this.maps;
  }

  private cookieOf(pod: MeshPod): bigint {
    if (pod.netnsCookie !== undefined) {
      if (!/^[0-9]+$/.test(pod.netnsCookie))
        throw new PodConfigError(`${pod.namespace}/${pod.name} (uid ${pod.uid})`, 'netnsCookie', pod.netnsCookie, 'not a decimal netns cookie');
      return BigInt(pod.netnsCookie);
    }
    if (pod.netnsPath) return netnsCookie(pod.netnsPath);
    throw new PodConfigError(`${pod.namespace}/${pod.name} (uid ${pod.uid})`, 'netnsPath', pod.netnsPath, 'sockops needs the pod netns (path or cookie)');
  }

  async enroll(pod: MeshPod): Promise<void> {
    const maps = this.requireMaps('enroll');
    const who = `${pod.namespace}/${pod.name} (uid ${pod.uid})`;
    if (pod.membership === 'none' || pod.interceptionMode === 'NONE') return this.unenroll(pod);
    if (pod.membership !== 'sidecar')
      throw new PodConfigError(who, 'membership', pod.membership, 'the sockops backend redirects sidecar pods only');
    if (pod.hostNetwork)
      throw new PodConfigError(who, 'hostNetwork', true, 'a host-network pod shares the node netns and cannot be redirected per pod');
    const want = podProgram(pod, this.cookieOf(pod));
    const same = this.installed.get(want.netnsCookie);
    if (same && canonical(same) === canonical(want)) return;
    // The same pod under another netns (sandbox replaced): drop the old enrolment first.
    for (const p of [...this.installed.values()])
      if (p.ref.uid === want.ref.uid && p.netnsCookie !== want.netnsCookie) {
        maps.deletePod(p);
        this.installed.delete(p.netnsCookie);
      }
    const gen = this.nextGen++;
    maps.writePod(want, gen, same);
    this.installed.set(want.netnsCookie, { ...want, gen });
    if (same) maps.deleteSelections(same);
  }

  async unenroll(pod: PodRef): Promise<void> {
    const maps = this.requireMaps('unenroll');
    for (const p of [...this.installed.values()])
      if (p.ref.uid === pod.uid) {
        maps.deletePod(p);
        this.installed.delete(p.netnsCookie);
      }
  }

  async observe(): Promise<InstalledState> {
    const maps = this.maps;
    const linksDir = path.join(this.dir, 'links');
    const links = Object.fromEntries(
      PROGRAMS.map((s) => [s.program, this.links.has(s.program) || (this.dir !== '' && fs.existsSync(path.join(linksDir, s.program)))]),
    );
    const nodeReady = maps !== null && Object.values(links).every(Boolean);
    const pods = maps?.readPods() ?? [];
    // The kernel is the truth: a drifted map shows up here, and the next enroll repairs it.
    if (maps) this.installed = new Map(pods.map((p) => [p.netnsCookie, p]));
    return {
      backend: 'sockops',
      nodeReady,
      nodeDetail: {
        pinDir: this.dir,
        cgroupRoot: this.node?.cgroupRoot ?? null,
        links,
        splice: maps?.spliceSetting() ?? null,
      },
      pods: pods.map((p) => ({
        ...p.ref,
        fingerprint: fingerprintOf(p),
        detail: { netnsCookie: p.netnsCookie.toString(), gen: p.gen, ips: p.ips },
      })),
      counters: maps?.readCounters() ?? {},
    };
  }

  /** Per-connection map entries alive now (O(entries) syscalls: for status and tests, not hot paths). */
  liveRecords(): ReturnType<SockopsMaps['liveRecords']> {
    return this.requireMaps('liveRecords').liveRecords();
  }

  async stop(opts: { cleanup: boolean }): Promise<void> {
    if (opts.cleanup) {
      // detach() also removes the link's pin.
      for (const link of this.links.values()) link.detach();
      if (!this.maps && this.dir === '') return;
    }
    this.maps?.close();
    this.maps = null;
    this.installed.clear();
    for (const link of this.links.values()) link.close();
    this.links.clear();
    if (opts.cleanup && this.dir !== '') fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
