/**
 * BpfProgram: a loaded program and the ways to attach it. The attach type of cgroup
 * programs comes from the program's ELF section (libbpf knows it: SEC("cgroup/connect4")
 * means cgroup_inet4_connect), so callers only say where.
 */
import * as fs from 'node:fs';
import { BpfError, invalidArgument } from './errors';
import { BpfLink, type TcDirection } from './link';
import { type BpfMap } from './map';
import { native, type FdHandle } from './native';
import { withNetns } from './netns';
import { probeSockmapLink, probeTcx } from './probe';

const CGROUP_ATTACH_TYPES = new Set([
  'cgroup_inet_ingress',
  'cgroup_inet_egress',
  'cgroup_inet_sock_create',
  'cgroup_inet_sock_release',
  'cgroup_sock_ops',
  'cgroup_device',
  'cgroup_inet4_bind',
  'cgroup_inet6_bind',
  'cgroup_inet4_connect',
  'cgroup_inet6_connect',
  'cgroup_inet4_post_bind',
  'cgroup_inet6_post_bind',
  'cgroup_udp4_sendmsg',
  'cgroup_udp6_sendmsg',
  'cgroup_udp4_recvmsg',
  'cgroup_udp6_recvmsg',
  'cgroup_getsockopt',
  'cgroup_setsockopt',
  'cgroup_inet4_getpeername',
  'cgroup_inet6_getpeername',
  'cgroup_inet4_getsockname',
  'cgroup_inet6_getsockname',
  'cgroup_sysctl',
]);

const CGROUP_PROGRAM_TYPES = new Set([
  'cgroup_skb',
  'cgroup_sock',
  'cgroup_sock_addr',
  'sock_ops',
  'cgroup_device',
  'cgroup_sysctl',
  'cgroup_sockopt',
]);

/** Program types that attach to a network namespace, and the attach type they take there. */
const NETNS_ATTACH_TYPES: Record<string, string | undefined> = {
  sk_lookup: 'sk_lookup',
  flow_dissector: 'flow_dissector',
};

export interface BpfProgramDescription {
  name: string;
  section: string;
  type: string;
  expectedAttachType: string;
}

export interface AttachTcOptions {
  /** netns path (e.g. /var/run/netns/x) the interface lives in; attach happens from inside it. */
  netns?: string;
  /** 'auto' (default) uses tcx when the kernel has it, else a legacy clsact/cls_bpf filter. */
  mode?: 'auto' | 'tcx' | 'legacy';
}

export class BpfProgram {
  readonly name: string;
  readonly section: string;
  /** libbpf program type name: 'sock_ops', 'cgroup_sock_addr', 'sk_msg', 'sched_cls', ... */
  readonly type: string;
  readonly expectedAttachType: string;
  private handle: FdHandle | null;

  /** @internal use BpfObject.program() or BpfProgram.fromPin() */
  constructor(handle: FdHandle, d: BpfProgramDescription) {
    this.handle = handle;
    this.name = d.name;
    this.section = d.section;
    this.type = d.type;
    this.expectedAttachType = d.expectedAttachType;
  }

  /** Adopts a pinned program (its section is unknown, so attach calls need an explicit attachType). */
  static fromPin(path: string): BpfProgram {
    const handle = native.objGet(path);
    try {
      const info = native.progInfo(native.fdOf(handle), path);
      return new BpfProgram(handle, { name: info.name, section: '', type: info.type, expectedAttachType: '' });
    } catch (err) {
      native.closeFd(handle);
      if (err instanceof BpfError && err.code === 'EINVAL') throw invalidArgument('adopt program', path, 'the pin is not a program');
      throw err;
    }
  }

  get fd(): number {
    const fd = this.handle ? native.fdOf(this.handle) : -1;
    if (fd < 0) throw new BpfError({ errno: 9, code: 'EBADF', op: 'use', target: this.target, detail: 'the program is closed' });
    return fd;
  }

  get id(): number {
    return native.progInfo(this.fd, this.target).id;
  }

  private get target(): string {
    return `program ${this.name}`;
  }

  /** Attaches to a cgroup v2 directory as a (multi) bpf_link. */
  attachCgroup(cgroupDir: string, opts: { attachType?: string } = {}): BpfLink {
    if (!CGROUP_PROGRAM_TYPES.has(this.type))
      throw invalidArgument('attach cgroup', this.target, `program type ${this.type} (section '${this.section}') cannot attach to a cgroup`);
    const attachType = opts.attachType ?? this.expectedAttachType;
    if (!CGROUP_ATTACH_TYPES.has(attachType))
      throw invalidArgument(
        'attach cgroup',
        this.target,
        `section '${this.section}' gives attach type '${attachType}', which is not a cgroup hook; pass opts.attachType`,
      );
    const handle = native.linkCgroup(this.fd, cgroupDir, attachType, this.target);
    return new BpfLink({ kind: 'link', handle }, `${this.target} (${attachType}) on cgroup ${cgroupDir}`);
  }

  /**
   * Attaches an sk_msg verdict program to a sockmap/sockhash. Uses a bpf_link where the
   * kernel has sockmap links (6.10+), else bpf_prog_attach (not pinnable).
   */
  attachSkMsg(map: BpfMap, opts: { legacy?: boolean } = {}): BpfLink {
    return this.attachSockmap(map, 'sk_msg', 'sk_msg_verdict', opts);
  }

  /**
   * Attaches an sk_skb verdict program (SEC("sk_skb/verdict"), BPF_SK_SKB_VERDICT: no stream
   * parser) to a sockmap/sockhash; sockets added to the map afterwards get it. Link or legacy
   * attachment as attachSkMsg.
   */
  attachSkSkbVerdict(map: BpfMap, opts: { legacy?: boolean } = {}): BpfLink {
    return this.attachSockmap(map, 'sk_skb', 'sk_skb_verdict', opts);
  }

  private attachSockmap(map: BpfMap, progType: string, attachType: string, opts: { legacy?: boolean }): BpfLink {
    if (this.type !== progType) throw invalidArgument(`attach ${progType}`, this.target, `program type is ${this.type}, not ${progType}`);
    if (map.type !== 'sockhash' && map.type !== 'sockmap')
      throw invalidArgument(`attach ${progType}`, this.target, `map ${map.name} is a ${map.type}, not a sockhash/sockmap`);
    const description = `${this.target} (${attachType}) on map ${map.name}`;
    const legacy = opts.legacy ?? !probeSockmapLink().available;
    if (!legacy) return new BpfLink({ kind: 'link', handle: native.linkMap(this.fd, map.fd, attachType, this.target) }, description);
    native.progAttachLegacy(this.fd, map.fd, attachType, this.target);
    return new BpfLink(
      {
        kind: 'prog-legacy',
        prog: native.dupFd(this.fd, this.target),
        target: native.dupFd(map.fd, map.name),
        attachType,
      },
      description,
    );
  }

  /**
   * Attaches a sched_cls program to an interface's ingress or egress: a tcx link when the
   * kernel has tcx (or mode 'tcx'), else a clsact qdisc + direct-action cls_bpf filter.
   * With opts.netns the interface is looked up and attached from inside that netns.
   */
  attachTc(ifname: string, direction: TcDirection, opts: AttachTcOptions = {}): BpfLink {
    if (this.type !== 'sched_cls') throw invalidArgument('attach tc', this.target, `program type is ${this.type}, not sched_cls`);
    if (direction !== 'ingress' && direction !== 'egress')
      throw invalidArgument('attach tc', this.target, `direction must be 'ingress' or 'egress', got '${String(direction)}'`);
    if (opts.netns !== undefined && !fs.existsSync(opts.netns))
      throw new BpfError({ errno: 2, code: 'ENOENT', op: 'attach tc', target: this.target, detail: `netns ${opts.netns} does not exist` });
    const mode = opts.mode ?? 'auto';
    const useTcx = mode === 'tcx' || (mode === 'auto' && probeTcx().available);
    const where = `${ifname}${opts.netns ? ` in netns ${opts.netns}` : ''}`;
    const attach = (): BpfLink => {
      const ifindex = native.ifNameToIndex(ifname, opts.netns ? `in netns ${opts.netns}` : 'in the current netns');
      if (useTcx) {
        const handle = native.linkTcx(this.fd, ifindex, direction, `${this.target} on ${where}`);
        return new BpfLink({ kind: 'link', handle }, `${this.target} (tcx ${direction}) on ${where}`);
      }
      const r = native.tcAttachLegacy(this.fd, ifindex, direction, `${this.target} on ${where}`);
      const backing = { kind: 'tc-legacy' as const, ifname, ifindex, direction, handle: r.handle, priority: r.priority };
      return new BpfLink(opts.netns ? { ...backing, netns: opts.netns } : backing, `${this.target} (tc ${direction}) on ${where}`);
    };
    return opts.netns ? withNetns(opts.netns, attach) : attach();
  }

  /**
   * Attaches an sk_lookup or flow_dissector program to a network namespace (netnsPath:
   * /var/run/netns/x, /proc/<pid>/ns/net) as a netns bpf_link, so it can be pinned and
   * adopted. The calling thread never enters the netns: the kernel takes an fd of it.
   * The link stops running (goes defunct) when the netns is destroyed.
   */
  attachNetns(netnsPath: string): BpfLink {
    const attachType = NETNS_ATTACH_TYPES[this.type];
    if (!attachType)
      throw invalidArgument(
        'attach netns',
        this.target,
        `program type ${this.type}${this.section ? ` (section '${this.section}')` : ''} cannot attach to a netns; only sk_lookup and flow_dissector can`,
      );
    if (typeof netnsPath !== 'string' || netnsPath === '')
      throw invalidArgument('attach netns', this.target, 'netns path must be a non-empty string');
    const handle = native.linkNetns(this.fd, netnsPath, attachType, this.target);
    return new BpfLink({ kind: 'link', handle }, `${this.target} (${attachType}) on netns ${netnsPath}`);
  }

  /** Pins the program itself (not an attachment). */
  pin(path: string): void {
    native.objPin(this.fd, path, this.target);
  }

  close(): void {
    if (this.handle) native.closeFd(this.handle);
    this.handle = null;
  }
}
